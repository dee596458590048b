"""Session-scoped fixtures that use the running local stack, or start the servers it lacks."""

from __future__ import annotations

import asyncio
import importlib
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from rased.adapters.cassandra.session import cassandra_session, execute
from rased.devstack.base import ManagedServer
from rased.devstack.postgres import PostgresServer
from rased.devstack.settings import StackSettings
from rased.migrations.cassandra import apply_cassandra_migrations
from rased.migrations.postgres import apply_postgres_migrations

# One node: every keyspace a test makes has one replica.
REPLICATION: dict[str, str | int] = {"class": "SimpleStrategy", "replication_factor": 1}


def _progress(message: str) -> None:
    print(f"[stack] {message}", flush=True)


@pytest.fixture(scope="session")
def stack_settings() -> StackSettings:
    """The stack's settings, from RASED_STACK_* variables like `make up` reads them."""
    return StackSettings()


def _ensure_running(name: str, settings: StackSettings) -> Iterator[ManagedServer]:
    """Use the server if it answers; otherwise install, start and stop it around the session."""
    module = importlib.import_module(f"rased.devstack.{name}")
    server: ManagedServer = module.SERVER(settings)
    try:
        asyncio.run(asyncio.wait_for(server.probe(), timeout=10))
        started_here = False
    except Exception:  # noqa: BLE001 - not answering means we start it
        server.install(_progress)
        server.prepare(_progress)
        server.start(_progress)
        asyncio.run(server.wait_ready(_progress))
        started_here = True
    yield server
    if started_here:
        server.stop(_progress)


@pytest.fixture(scope="session")
def redis_server(stack_settings: StackSettings) -> Iterator[ManagedServer]:
    """A Redis server that answers PING."""
    yield from _ensure_running("redis", stack_settings)


@pytest.fixture(scope="session")
def postgres_server(stack_settings: StackSettings) -> Iterator[ManagedServer]:
    """A PostgreSQL server that answers SELECT 1."""
    yield from _ensure_running("postgres", stack_settings)


@pytest.fixture(scope="session")
def kafka_server(stack_settings: StackSettings) -> Iterator[ManagedServer]:
    """A Kafka broker (KRaft) that answers metadata requests."""
    yield from _ensure_running("kafka", stack_settings)


@pytest.fixture(scope="session")
def cassandra_server(stack_settings: StackSettings) -> Iterator[ManagedServer]:
    """A Cassandra node that answers CQL."""
    yield from _ensure_running("cassandra", stack_settings)


@pytest.fixture(scope="session")
def triton_server(stack_settings: StackSettings) -> Iterator[ManagedServer]:
    """A Triton server that reports ready."""
    yield from _ensure_running("triton", stack_settings)


async def _admin_sql(server: PostgresServer, statement: str) -> None:
    conn = await asyncpg.connect(server.admin_dsn())
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _create_database(server: ManagedServer, label: str) -> tuple[PostgresServer, str]:
    """Create a database owned by the application's role and migrate it; return its name."""
    assert isinstance(server, PostgresServer)
    await server.bootstrap()
    name = f"test_{label}_{uuid.uuid4().hex[:12]}"
    owner = server.settings.postgres_user
    await _admin_sql(server, f'CREATE DATABASE "{name}" OWNER "{owner}"')
    await apply_postgres_migrations(server.dsn(name))
    return server, name


async def _drop_database(server: PostgresServer, name: str) -> None:
    await _admin_sql(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _label(request: pytest.FixtureRequest) -> str:
    module: str = request.module.__name__
    return module.rsplit(".", 1)[-1].removeprefix("test_")[:24]


@pytest.fixture(scope="module")
def module_database(
    postgres_server: ManagedServer, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A migrated PostgreSQL database of this test module's own; its DSN (dropped after)."""
    server, name = asyncio.run(_create_database(postgres_server, _label(request)))
    yield server.dsn(name)
    asyncio.run(_drop_database(server, name))


@pytest.fixture
async def fresh_database(
    postgres_server: ManagedServer, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """A migrated PostgreSQL database of this test's own (its listings and audit rows alone)."""
    server, name = await _create_database(postgres_server, _label(request))
    yield server.dsn(name)
    await _drop_database(server, name)


@pytest.fixture(scope="module")
def module_keyspace(
    cassandra_server: ManagedServer, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A Cassandra keyspace of this test module's own, migrated; its name (dropped after)."""
    name = f"test_{_label(request)}_{uuid.uuid4().hex[:12]}"
    host, port = [cassandra_server.settings.host], cassandra_server.settings.cassandra_port
    asyncio.run(apply_cassandra_migrations(host, port, name, REPLICATION))
    yield name

    async def drop() -> None:
        async with cassandra_session(host, port) as session:
            await execute(session, f"DROP KEYSPACE IF EXISTS {name}")

    asyncio.run(drop())
