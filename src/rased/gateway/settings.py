"""Settings of the local REST edge (environment prefix RASED_GATEWAY_)."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    """Everything the REST edge reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="RASED_GATEWAY_", extra="forbid")

    service_name: str = Field(default="gateway", description="Name used in logs.")
    http_host: str = Field(default="127.0.0.1", description="Address the HTTP server binds.")
    http_port: int = Field(default=8080, ge=0, le=65535, description="HTTP port; 0 picks one.")
    upstreams: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "gRPC upstream of each service, full name to host:port, as JSON, e.g. "
            '{"rased.v1.IngestService": "127.0.0.1:50051"}; a service without one answers 503.'
        ),
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        gt=0,
        description="Largest request body accepted; a larger one is answered 413 unread.",
    )
    cors_allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port]) the Web SDK runs on; '*' allows any.",
    )
    cors_max_age: timedelta = Field(
        default=timedelta(hours=1), description="How long a browser may cache a preflight."
    )
    upstream_timeout: timedelta = Field(
        default=timedelta(seconds=10), description="Deadline of each upstream gRPC call."
    )
    forward_headers: list[str] = Field(
        default_factory=lambda: ["authorization", "origin", "x-correlation-id"],
        description="Request headers passed to the upstream as gRPC metadata.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Minimum level of the JSON logs on stdout."
    )
