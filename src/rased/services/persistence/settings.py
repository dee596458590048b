"""Settings of the persistence worker (environment prefix RASED_PERSISTENCE_)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from rased.common.settings import ServiceSettings


class PersistenceSettings(ServiceSettings):
    """Everything the persistence worker reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="RASED_PERSISTENCE_", extra="forbid")

    service_name: str = Field(default="persistence", description="Name in logs, metrics, traces.")
    grpc_port: int = Field(
        default=50052, ge=0, le=65535, description="gRPC port (health only); 0 picks one."
    )
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", description="Kafka brokers, comma-separated host:port."
    )
    consumer_group: str = Field(
        default="rased-persistence",
        description="Kafka consumer group; every worker of the deployment shares it.",
    )
    max_poll_records: int = Field(
        default=200, gt=0, description="Most messages taken per poll (one commit per poll)."
    )
    max_partition_fetch_bytes: int = Field(
        default=8 * 1024 * 1024,
        gt=0,
        description="Most bytes fetched per partition; above the largest compiled message.",
    )
    cassandra_contact_points: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"],
        description='Cassandra nodes to bootstrap from (JSON list, e.g. ["10.0.0.1"]).',
    )
    cassandra_port: int = Field(default=9042, ge=1, le=65535, description="CQL native port.")
    cassandra_keyspace: str = Field(
        default="rased", description="Keyspace holding events and data keys (migrated)."
    )
    cassandra_request_timeout: timedelta = Field(
        default=timedelta(seconds=10), description="Driver timeout of one CQL request."
    )
    cassandra_max_in_flight: int = Field(
        default=128, gt=0, description="Most CQL writes in flight at once from one worker."
    )
    cassandra_max_reconnect_delay: timedelta = Field(
        default=timedelta(seconds=5),
        description="Longest wait between the driver's attempts to reach a node that is down.",
    )
    postgres_dsn: str = Field(
        default="postgresql://rased@127.0.0.1:5432/rased",
        description="PostgreSQL holding the organizations (their retention).",
    )
    master_keys: SecretStr = Field(
        description=(
            "Keys wrapping the organizations' data keys: `id:base64key` pairs, "
            "comma-separated, newest last (older ones still open what they sealed)."
        )
    )
    default_retention_days: int = Field(
        default=90,
        gt=0,
        description="Retention of an organization PostgreSQL does not know (days).",
    )
    org_cache_ttl: timedelta = Field(
        default=timedelta(seconds=60),
        description="How long an organization's retention and data keys stay cached.",
    )
    retry_initial_backoff: timedelta = Field(
        default=timedelta(milliseconds=200),
        description="First wait before writing again after a store was unavailable.",
    )
    retry_max_backoff: timedelta = Field(
        default=timedelta(seconds=10),
        description="Longest wait between attempts while a store stays unavailable.",
    )

    @model_validator(mode="after")
    def _backoff_order(self) -> PersistenceSettings:
        if self.retry_initial_backoff > self.retry_max_backoff:
            raise ValueError("retry_initial_backoff must not exceed retry_max_backoff")
        if self.retry_initial_backoff <= timedelta(0):
            raise ValueError("retry_initial_backoff must be positive")
        return self
