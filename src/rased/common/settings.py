"""Settings every Rased service shares; each service subclasses them with its own prefix."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Transport, logging and telemetry settings of one service process.

    Subclasses set `model_config = SettingsConfigDict(env_prefix="RASED_<SERVICE>_", ...)`
    and add their own fields. Load once in `main()`, never at import time.
    """

    model_config = SettingsConfigDict(env_prefix="RASED_", extra="forbid")

    service_name: str = Field(default="rased", description="Name used in logs, metrics, traces.")
    grpc_host: str = Field(default="127.0.0.1", description="Address the gRPC server binds.")
    grpc_port: int = Field(default=50051, ge=0, le=65535, description="gRPC port; 0 picks one.")
    metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Port of the Prometheus /metrics endpoint; unset disables it.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Minimum level of the JSON logs on stdout."
    )
    shutdown_grace: timedelta = Field(
        default=timedelta(seconds=10),
        description="How long in-flight calls may finish after shutdown starts.",
    )
    shutdown_drain: timedelta = Field(
        default=timedelta(seconds=1),
        description="How long health reports NOT_SERVING before new calls are refused.",
    )
    reflection: bool = Field(default=True, description="Serve gRPC server reflection.")
    max_message_bytes: int = Field(
        default=8 * 1024 * 1024,
        gt=0,
        description="Largest gRPC message the server receives or sends.",
    )
    otel_exporter: Literal["none", "console", "otlp"] = Field(
        default="none",
        description="Where OpenTelemetry spans go: nowhere, stdout, or an OTLP/gRPC collector.",
    )
    otel_endpoint: str = Field(
        default="http://127.0.0.1:4317",
        description="OTLP/gRPC collector address, when otel_exporter is otlp.",
    )
