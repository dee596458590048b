"""Brings the whole local stack up (install, start, wait, migrate), reports on it, stops it."""

from __future__ import annotations

import asyncio
import importlib
import time
from dataclasses import dataclass

from rased.adapters.kafka.topics import KafkaTopicSettings, ensure_topics
from rased.devstack.base import ManagedServer, Progress, StackError
from rased.devstack.services import RasedService, load_services
from rased.devstack.settings import StackSettings
from rased.migrations.cassandra import apply_cassandra_migrations
from rased.migrations.postgres import apply_postgres_migrations

# Start order; all start at once and are awaited together, so this only orders the output.
SERVER_NAMES = ("redis", "postgres", "kafka", "cassandra", "triton")


def load_servers(settings: StackSettings) -> list[ManagedServer]:
    """Instantiate every server of the stack."""
    servers: list[ManagedServer] = []
    for name in SERVER_NAMES:
        module = importlib.import_module(f"rased.devstack.{name}")
        servers.append(module.SERVER(settings))
    return servers


def _server(servers: list[ManagedServer], name: str) -> ManagedServer:
    return next(s for s in servers if s.name == name)


def timed_progress() -> Progress:
    """Return a progress printer that prefixes each line with the seconds since it was made."""
    start = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - start:6.1f}s] {message}", flush=True)

    return progress


async def up(settings: StackSettings, progress: Progress) -> list[ManagedServer]:
    """Install, start and migrate every server; return them once all answer."""
    servers = load_servers(settings)
    for server in servers:
        progress(f"{server.name}: installing")
        await asyncio.to_thread(server.install, progress)
    for server in servers:
        await asyncio.to_thread(server.prepare, progress)
        server.start(progress)
    answers = await asyncio.gather(*(s.wait_ready(progress) for s in servers))
    for server, answer in zip(servers, answers, strict=True):
        progress(f"{server.name}: ready at {server.endpoint()} ({answer})")
    await migrate(settings, servers, progress)
    return servers


async def migrate(
    settings: StackSettings, servers: list[ManagedServer], progress: Progress
) -> None:
    """Create the database role, apply migrations and create the Kafka topics."""
    from rased.devstack.postgres import PostgresServer

    postgres = _server(servers, "postgres")
    assert isinstance(postgres, PostgresServer)
    await postgres.bootstrap()
    applied = await apply_postgres_migrations(postgres.dsn())
    progress(f"postgres: migrations applied: {', '.join(applied) or 'none pending'}")
    applied = await apply_cassandra_migrations(
        contact_points=[settings.host],
        port=settings.cassandra_port,
        keyspace=settings.cassandra_keyspace,
        replication={"class": "SimpleStrategy", "replication_factor": 1},
    )
    progress(f"cassandra: migrations applied: {', '.join(applied) or 'none pending'}")
    created = await ensure_topics(f"{settings.host}:{settings.kafka_port}", KafkaTopicSettings())
    progress(f"kafka: topics created: {', '.join(created) or 'all present'}")


async def start_services(services: list[RasedService], progress: Progress) -> None:
    """Start the Rased services and wait until each reports SERVING."""
    for service in services:
        service.install(progress)
        service.start(progress)
    await asyncio.gather(*(s.wait_ready(progress) for s in services))


def down(settings: StackSettings, progress: Progress) -> None:
    """Stop every server the stack started, in reverse order."""
    for server in reversed(load_servers(settings)):
        server.stop(progress)


@dataclass(frozen=True)
class ServerStatus:
    """One server's state as `make status` shows it."""

    name: str
    endpoint: str
    pid: int | None
    healthy: bool
    detail: str


def describe_failure(exc: BaseException) -> str:
    """Return a failed probe's reason on one short line (a gRPC error by its status code)."""
    code = getattr(exc, "code", None)
    details = getattr(exc, "details", None)
    if callable(code) and callable(details):
        # grpc's AioRpcError prints as a multi-line dump; its code and details say it all.
        text = f"{code().name}: {details()}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:160]


async def status(settings: StackSettings) -> list[ServerStatus]:
    """Probe every server once (in parallel) and report what answered."""
    servers: list[ManagedServer] = [*load_servers(settings), *load_services(settings)]

    async def one(server: ManagedServer) -> ServerStatus:
        try:
            detail = await asyncio.wait_for(server.probe(), timeout=10)
            healthy = True
        except Exception as exc:  # noqa: BLE001 - any failure is reported, not raised
            detail = describe_failure(exc)
            healthy = False
        return ServerStatus(server.name, server.endpoint(), server.pid(), healthy, detail)

    return list(await asyncio.gather(*(one(s) for s in servers)))


__all__ = [
    "SERVER_NAMES",
    "Progress",
    "ServerStatus",
    "StackError",
    "down",
    "start_services",
    "status",
    "up",
]
