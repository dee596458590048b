"""Settings of the admin service (environment prefix RASED_ADMIN_)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from rased.common.settings import ServiceSettings

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

    @model_validator(mode="after")
    def _operator_token_is_strong(self) -> AdminSettings:
        if len(self.operator_token.get_secret_value().encode()) < MIN_OPERATOR_TOKEN_BYTES:
            raise ValueError(f"operator_token must be at least {MIN_OPERATOR_TOKEN_BYTES} bytes")
        return self
