"""Settings of the local development stack (ports, folders, start-up limits)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def repository_root() -> Path:
    """Return the repository root (the folder holding pyproject.toml)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "proto").is_dir():
            return parent
    # Installed outside a checkout: fall back to the working directory.
    return Path.cwd()


class StackSettings(BaseSettings):
    """Where the local stack lives and which ports its servers use."""

    model_config = SettingsConfigDict(env_prefix="RASED_STACK_", extra="forbid")

    state_dir: Path = Field(
        default_factory=lambda: repository_root() / ".stack",
        description="Folder holding every server's data, config, logs and pid file.",
    )
    host: str = Field(default="127.0.0.1", description="Address every server binds to.")
    redis_port: int = Field(default=6379, description="Redis port.")
    postgres_port: int = Field(default=5432, description="PostgreSQL port.")
    postgres_user: str = Field(default="rased", description="PostgreSQL role the services use.")
    postgres_db: str = Field(default="rased", description="PostgreSQL database the services use.")
    kafka_port: int = Field(default=9092, description="Kafka broker (client) port.")
    kafka_controller_port: int = Field(default=9093, description="Kafka KRaft controller port.")
    kafka_version: str = Field(default="4.1.1", description="Kafka version from Maven Central.")
    cassandra_port: int = Field(default=9042, description="Cassandra CQL native port.")
    cassandra_storage_port: int = Field(default=7000, description="Cassandra gossip port.")
    cassandra_keyspace: str = Field(default="rased", description="Keyspace the services use.")
    cassandra_version: str = Field(
        default="5.0.9", description="Cassandra version from Maven Central."
    )
    triton_http_port: int = Field(default=8000, description="Triton HTTP/REST port.")
    triton_grpc_port: int = Field(default=8001, description="Triton gRPC port.")
    triton_metrics_port: int = Field(default=8002, description="Triton Prometheus metrics port.")
    # The Rased services `make up` starts (their defaults are SERVICE_ENTRIES' ports, which
    # docker-compose and Envoy use too).
    ingestion_port: int = Field(default=50051, description="Ingestion service gRPC port.")
    persistence_port: int = Field(
        default=50052, description="Persistence worker health (gRPC) port."
    )
    admin_port: int = Field(default=50053, description="Admin service gRPC port.")
    results_port: int = Field(default=50054, description="Results service gRPC port.")
    notification_port: int = Field(
        default=50055, description="Notification worker health (gRPC) port."
    )
    scoring_port: int = Field(default=50056, description="Scoring worker health (gRPC) port.")
    gateway_port: int = Field(default=8080, description="REST edge (HTTP) port.")
    start_timeout: timedelta = Field(
        default=timedelta(seconds=180),
        description="How long one server may take to answer its protocol after start.",
    )
    stop_timeout: timedelta = Field(
        default=timedelta(seconds=30),
        description="How long a server may take to exit after SIGTERM before it is killed.",
    )
