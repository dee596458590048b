"""Settings of the results service (environment prefix RASED_RESULTS_)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from rased.common.settings import ServiceSettings


class ResultsSettings(ServiceSettings):
    """Everything the results process reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="RASED_RESULTS_", extra="forbid")

    service_name: str = Field(default="results", description="Name in logs, metrics, traces.")
    grpc_port: int = Field(default=50054, ge=0, le=65535, description="gRPC port; 0 picks one.")
    postgres_dsn: str = Field(
        default="postgresql://rased@127.0.0.1:5432/rased",
        description="PostgreSQL holding API keys, results and pending transactions.",
    )
    postgres_pool_size: int = Field(
        default=10, gt=0, description="Most PostgreSQL connections the queries use at once."
    )
    key_cache_ttl: timedelta = Field(
        default=timedelta(seconds=5),
        description="How long a checked API key is trusted without asking PostgreSQL; "
        "a revocation takes effect within it.",
    )
    pending_max_age: timedelta = Field(
        default=timedelta(hours=1),
        description="A transaction marked buffered or scoring longer ago than this, and "
        "still without a result, is reported NOT_FOUND.",
    )
    watch_poll_interval: timedelta = Field(
        default=timedelta(seconds=5),
        description="How often a result stream queries PostgreSQL without a notification "
        "(the safety net under LISTEN/NOTIFY).",
    )
    watch_batch_size: int = Field(
        default=100, gt=0, le=1000, description="Most results a stream reads per query."
    )
    listen_check_interval: timedelta = Field(
        default=timedelta(seconds=5),
        description="How often the LISTEN connection is checked (and reopened if lost).",
    )
