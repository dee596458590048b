"""Session-scoped fixtures that use the running local stack, or start the servers it lacks."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Iterator

import pytest

from rased.devstack.base import ManagedServer
from rased.devstack.settings import StackSettings


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
