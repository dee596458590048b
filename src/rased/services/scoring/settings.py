"""Settings of the scoring worker (environment prefix RASED_SCORING_)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from rased.common.settings import ServiceSettings


def default_model_path() -> Path:
    """Return the repository's bot_detection ONNX file (the package is installed editable)."""
    return Path(__file__).resolve().parents[4] / "model_repository/bot_detection/1/model.onnx"


def default_session_model_path() -> Path:
    """Return the repository's session_scores ONNX file."""
    return Path(__file__).resolve().parents[4] / "model_repository/session_scores/1/model.onnx"


class ScoringSettings(ServiceSettings):
    """Everything the scoring worker reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="RASED_SCORING_", extra="forbid")

    service_name: str = Field(default="scoring", description="Name in logs, metrics, traces.")
    grpc_port: int = Field(
        default=50056, ge=0, le=65535, description="gRPC port (health only); 0 picks one."
    )
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", description="Kafka brokers, comma-separated host:port."
    )
    consumer_group: str = Field(
        default="rased-scoring",
        description="Kafka consumer group; every worker of the deployment shares it.",
    )
    max_poll_records: int = Field(
        default=64,
        gt=0,
        description="Most transactions taken per poll: they are scored in one model request.",
    )
    max_partition_fetch_bytes: int = Field(
        default=8 * 1024 * 1024,
        gt=0,
        description="Most bytes fetched per partition; above the largest compiled message.",
    )
    postgres_dsn: str = Field(
        default="postgresql://rased@127.0.0.1:5432/rased",
        description="PostgreSQL holding the results and pending statuses.",
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="Redis holding the user profiles."
    )
    redis_key_prefix: str = Field(default="", description="Prefix of the profile keys.")
    profile_ttl: timedelta = Field(
        default=timedelta(days=180), description="A profile not updated for this long expires."
    )
    triton_url: str = Field(
        default="127.0.0.1:8001", description="Triton's gRPC endpoint, host:port."
    )
    model_name: str = Field(
        default="bot_detection", description="Triton model of the pointer (bot) score."
    )
    session_model_name: str = Field(
        default="session_scores",
        description="Triton model of the scores that compare a session with the user's profile.",
    )
    triton_timeout: timedelta = Field(
        default=timedelta(seconds=2), description="Deadline of one inference request."
    )
    triton_attempts: int = Field(
        default=2, ge=1, description="Tries of one request (the first included) before failing."
    )
    breaker_failure_threshold: int = Field(
        default=3, ge=1, description="Consecutive failed requests that open the circuit breaker."
    )
    breaker_reset_timeout: timedelta = Field(
        default=timedelta(seconds=5),
        description="How long an open breaker fails fast before one probe request.",
    )
    degraded_fallback: bool = Field(
        default=False,
        description=(
            "While Triton is unavailable, score with the same ONNX model in-process and mark "
            "results degraded (else wait, committing nothing)."
        ),
    )
    onnx_model_path: Path = Field(
        default_factory=default_model_path,
        description="The ONNX file of the in-process fallback (the one Triton serves).",
    )
    session_onnx_model_path: Path = Field(
        default_factory=default_session_model_path,
        description="The session_scores ONNX file of the in-process fallback.",
    )
    retry_initial_backoff: timedelta = Field(
        default=timedelta(milliseconds=200),
        description="First wait before scoring a batch again after a dependency failed.",
    )
    retry_max_backoff: timedelta = Field(
        default=timedelta(seconds=10),
        description="Longest wait between attempts while a dependency stays unavailable.",
    )

    @model_validator(mode="after")
    def _backoff_order(self) -> ScoringSettings:
        if self.retry_initial_backoff <= timedelta(0):
            raise ValueError("retry_initial_backoff must be positive")
        if self.retry_initial_backoff > self.retry_max_backoff:
            raise ValueError("retry_initial_backoff must not exceed retry_max_backoff")
        return self
