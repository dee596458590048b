"""Settings of the admin service (environment prefix RASED_ADMIN_)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from rased.common.settings import ServiceSettings
from rased.services.admin.erasure import RunnerPolicy

# Shorter operator tokens could be guessed; 32 bytes is what `secrets.token_urlsafe` gives.
MIN_OPERATOR_TOKEN_BYTES = 32


class AdminSettings(ServiceSettings):
    """Everything the admin process reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="RASED_ADMIN_", extra="forbid")

    service_name: str = Field(default="admin", description="Name in logs, metrics, traces.")
    grpc_port: int = Field(default=50053, ge=0, le=65535, description="gRPC port; 0 picks one.")
    postgres_dsn: str = Field(
        default="postgresql://rased@127.0.0.1:5432/rased",
        description="PostgreSQL holding organizations, API keys, encryption keys and the audit.",
    )
    master_keys: SecretStr = Field(
        description=(
            "Keys sealing the organizations' private keys: `id:base64key` pairs, "
            "comma-separated, newest last (the same keyring as ingestion's)."
        )
    )
    operator_token: SecretStr = Field(
        description="The operator credential (`Bearer <token>`): may manage every organization."
    )
    default_retention_days: int = Field(
        default=90, ge=1, le=3650, description="Retention of a new organization that names none."
    )
    default_key_overlap: timedelta = Field(
        default=timedelta(hours=24),
        description="How long a rotated API key, encryption key or webhook secret keeps "
        "working by default.",
    )
    page_size_default: int = Field(default=50, gt=0, description="Page size when none is asked.")
    page_size_max: int = Field(default=500, gt=0, description="Largest page size served.")
    # Subject erasure reaches into every store the pipeline writes: the prefixes and the
    # keyspace must be the ones ingestion, scoring and persistence use.
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Redis holding ingestion's buffers and scoring's profiles (erasure).",
    )
    redis_buffer_prefix: str = Field(
        default="rased:",
        description="Prefix of ingestion's buffer keys: RASED_INGESTION_REDIS_KEY_PREFIX.",
    )
    redis_profile_prefix: str = Field(
        default="",
        description="Prefix of scoring's profile keys: RASED_SCORING_REDIS_KEY_PREFIX.",
    )
    cassandra_contact_points: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"],
        description='Cassandra nodes to bootstrap from (JSON list, e.g. ["10.0.0.1"]).',
    )
    cassandra_port: int = Field(default=9042, ge=1, le=65535, description="CQL native port.")
    cassandra_keyspace: str = Field(
        default="rased", description="Keyspace the persistence worker writes events to."
    )
    cassandra_request_timeout: timedelta = Field(
        default=timedelta(seconds=10), description="Driver timeout of one CQL request."
    )
    erasure_poll_interval: timedelta = Field(
        default=timedelta(seconds=5),
        description="How often the erasure runner looks for due jobs (a new job wakes it).",
    )
    erasure_lease: timedelta = Field(
        default=timedelta(minutes=10),
        description="How long a claimed erasure job is held before another runner may take "
        "it over (its runner is presumed dead).",
    )
    erasure_retry_initial: timedelta = Field(
        default=timedelta(seconds=5),
        description="Wait before retrying an erasure job after its first failed attempt.",
    )
    erasure_retry_max: timedelta = Field(
        default=timedelta(minutes=10),
        description="Longest wait between attempts of a failing erasure job (doubling up to it).",
    )

    @model_validator(mode="after")
    def _operator_token_is_strong(self) -> AdminSettings:
        if len(self.operator_token.get_secret_value().encode()) < MIN_OPERATOR_TOKEN_BYTES:
            raise ValueError(f"operator_token must be at least {MIN_OPERATOR_TOKEN_BYTES} bytes")
        return self

    @model_validator(mode="after")
    def _erasure_timing(self) -> AdminSettings:
        for name in ("erasure_poll_interval", "erasure_lease", "erasure_retry_initial"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be positive")
        if self.erasure_retry_initial > self.erasure_retry_max:
            raise ValueError("erasure_retry_initial must not exceed erasure_retry_max")
        if any(char in self.redis_buffer_prefix for char in "/{}"):
            raise ValueError("redis_buffer_prefix must not contain '/', '{' or '}'")
        return self

    def erasure_policy(self) -> RunnerPolicy:
        """Return how the erasure runner polls, leases and retries."""
        return RunnerPolicy(
            poll_interval=self.erasure_poll_interval,
            lease=self.erasure_lease,
            retry_initial=self.erasure_retry_initial,
            retry_max=self.erasure_retry_max,
        )
