"""Settings of the notification worker (environment prefix RASED_NOTIFICATION_)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from rased.common.settings import ServiceSettings

# Like Svix: immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h after each failure.
DEFAULT_SCHEDULE = (
    timedelta(0),
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)


class NotificationSettings(ServiceSettings):
    """Everything the notification worker reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="RASED_NOTIFICATION_", extra="forbid")

    service_name: str = Field(default="notification", description="Name in logs, metrics, traces.")
    grpc_port: int = Field(
        default=50055, ge=0, le=65535, description="gRPC port (health only); 0 picks one."
    )
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", description="Kafka brokers, comma-separated host:port."
    )
    consumer_group: str = Field(
        default="rased-notification",
        description="Kafka consumer group; every worker of the deployment shares it.",
    )
    max_poll_records: int = Field(
        default=200, gt=0, description="Most messages taken per poll (one commit per poll)."
    )
    postgres_dsn: str = Field(
        default="postgresql://rased@127.0.0.1:5432/rased",
        description="PostgreSQL holding the endpoints, the deliveries and their attempts.",
    )
    master_keys: SecretStr = Field(
        description=(
            "Keys sealing the endpoints' signing secrets: `id:base64key` pairs, "
            "comma-separated, newest last (the same keyring as the admin service's)."
        )
    )
    retry_schedule: list[timedelta] = Field(
        default_factory=lambda: list(DEFAULT_SCHEDULE),
        min_length=1,
        description=(
            "Wait before each attempt: the first after the notification, each next after the "
            "previous failure; after the last the delivery is dead-lettered (JSON list)."
        ),
    )
    retry_jitter: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        description="Each wait is drawn in [wait*(1-jitter), wait*(1+jitter)].",
    )
    retry_after_max: timedelta = Field(
        default=timedelta(hours=24),
        description="Longest Retry-After honoured; a longer one waits this long.",
    )
    request_timeout: timedelta = Field(
        default=timedelta(seconds=15),
        description="How long an endpoint has to answer 2xx; later counts as a failure.",
    )
    claim_lease: timedelta = Field(
        default=timedelta(seconds=60),
        description=(
            "How long a claimed attempt is kept from other workers; after it a worker that "
            "died mid-attempt leaves the delivery to the others. Above request_timeout."
        ),
    )
    poll_interval: timedelta = Field(
        default=timedelta(seconds=1),
        description="How often the scheduler looks for due deliveries when it found none.",
    )
    claim_batch: int = Field(
        default=50, gt=0, description="Most deliveries claimed (and sent at once) per round."
    )
    max_response_bytes: int = Field(
        default=4096, ge=0, description="Most bytes of an answer's body read (then dropped)."
    )
    retry_initial_backoff: timedelta = Field(
        default=timedelta(milliseconds=200),
        description="First wait before handling a message again after PostgreSQL failed.",
    )
    retry_max_backoff: timedelta = Field(
        default=timedelta(seconds=10),
        description="Longest wait between attempts while PostgreSQL stays unavailable.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> NotificationSettings:
        if self.claim_lease <= self.request_timeout:
            raise ValueError("claim_lease must exceed request_timeout")
        if not timedelta(0) < self.retry_initial_backoff <= self.retry_max_backoff:
            raise ValueError("need 0 < retry_initial_backoff <= retry_max_backoff")
        if any(wait < timedelta(0) for wait in self.retry_schedule):
            raise ValueError("retry_schedule waits must not be negative")
        return self
