"""Settings of the ingestion service (environment prefix RASED_INGESTION_)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from rased.adapters.redis.rate_limits import parse_limit
from rased.common.settings import ServiceSettings
from rased.services.ingestion.ports import BufferPolicy


class IngestionSettings(ServiceSettings):
    """Everything the ingestion process reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="RASED_INGESTION_", extra="forbid")

    service_name: str = Field(default="ingestion", description="Name in logs, metrics, traces.")
    grpc_port: int = Field(default=50051, ge=0, le=65535, description="gRPC port; 0 picks one.")
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="Redis holding the buffers and limits."
    )
    redis_key_prefix: str = Field(
        default="rased:", description="Prefix of every Redis key this service writes."
    )
    postgres_dsn: str = Field(
        default="postgresql://rased@127.0.0.1:5432/rased",
        description="PostgreSQL holding organizations, API keys and encryption keys.",
    )
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", description="Kafka brokers, comma-separated host:port."
    )
    session_token_secret: SecretStr = Field(
        description="HMAC key (>= 32 bytes) signing session tokens; shared by every instance."
    )
    previous_session_token_secrets: list[SecretStr] = Field(
        default_factory=list,
        description="Former signing keys, still accepted while their tokens may be alive.",
    )
    session_token_ttl: timedelta = Field(
        default=timedelta(minutes=15), description="Default lifetime of a session token."
    )
    session_token_max_ttl: timedelta = Field(
        default=timedelta(minutes=60), description="Longest lifetime a caller may ask for."
    )
    master_keys: SecretStr = Field(
        description=(
            "Keys sealing the organizations' private keys: `id:base64key` pairs, "
            "comma-separated, newest last (older ones still open what they sealed)."
        )
    )
    encryption_key_cache_ttl: timedelta = Field(
        default=timedelta(seconds=30),
        description="How long an organization's private key stays in memory once opened.",
    )
    key_cache_ttl: timedelta = Field(
        default=timedelta(seconds=5),
        description="How long a checked API key is trusted without asking PostgreSQL; "
        "a revocation takes effect within it.",
    )
    max_batch_bytes: int = Field(
        default=512 * 1024, gt=0, description="Largest batch accepted, in encoded bytes."
    )
    max_events_per_batch: int = Field(
        default=500, gt=0, le=500, description="Most events one batch may hold."
    )
    max_event_bytes: int = Field(
        default=32 * 1024, gt=0, description="Largest single event accepted, in encoded bytes."
    )
    rate_limit_per_organization: str = Field(
        default="2000/second",
        description=(
            "Batches an organization may send, e.g. 2000/second: that many at once, then "
            "refilled at that rate."
        ),
    )
    rate_limit_per_session: str = Field(
        default="50/second",
        description=(
            "Batches one session may send, e.g. 50/second: that many at once, then refilled "
            "at that rate."
        ),
    )
    flush_max_batches: int = Field(
        default=300, gt=0, description="Flush a transaction holding more batches than this."
    )
    flush_max_bytes: int = Field(
        default=3 * 1024 * 1024,
        gt=0,
        description="Flush a transaction at this many buffered bytes (under Kafka's limit).",
    )
    kafka_max_message_bytes: int = Field(
        default=4 * 1024 * 1024, gt=0, description="Kafka's max.message.bytes for the topics."
    )
    idle_timeout: timedelta = Field(
        default=timedelta(minutes=5), description="Flush a transaction idle for this long."
    )
    sweep_interval: timedelta = Field(
        default=timedelta(seconds=1), description="How often idle transactions are looked for."
    )
    stale_flush_after: timedelta = Field(
        default=timedelta(seconds=30),
        description="Re-publish a flush interrupted (crash) for longer than this.",
    )

    @field_validator("rate_limit_per_organization", "rate_limit_per_session")
    @classmethod
    def _rate_limit_notation(cls, value: str) -> str:
        # Refused here, with the setting's name, rather than when the service starts.
        try:
            parse_limit(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a rate limit; write it as <batches>/<second|minute|hour|day>"
            ) from None
        return value

    @model_validator(mode="after")
    def _flush_fits_in_kafka(self) -> IngestionSettings:
        # The compiled transaction adds its envelope to the buffered bytes.
        if self.flush_max_bytes + self.max_batch_bytes > self.kafka_max_message_bytes:
            raise ValueError(
                "flush_max_bytes + max_batch_bytes must stay under kafka_max_message_bytes, "
                "or a compiled transaction may not fit in one Kafka message"
            )
        if len(self.session_token_secret.get_secret_value().encode()) < 32:
            raise ValueError("session_token_secret must be at least 32 bytes")
        return self

    def buffer_policy(self) -> BufferPolicy:
        """Return the flush triggers and sweeper timing."""
        return BufferPolicy(
            max_batches=self.flush_max_batches,
            max_bytes=self.flush_max_bytes,
            idle_timeout=self.idle_timeout,
            sweep_interval=self.sweep_interval,
            stale_flush_after=self.stale_flush_after,
        )
