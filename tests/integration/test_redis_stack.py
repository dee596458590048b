"""The local Redis server: round trips, the append-only file, and data surviving restarts."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from rased.devstack.base import ManagedServer, pid_is_alive, port_is_free


def _progress(message: str) -> None:
    print(f"[stack] {message}", flush=True)


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test alone, so tests never see each other's keys."""
    return f"test:{uuid.uuid4().hex}:"


@pytest.fixture
async def client(redis_server: ManagedServer, prefix: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the stack's Redis; deletes the test's keys afterwards."""
    settings = redis_server.settings
    conn = aioredis.Redis(host=settings.host, port=settings.redis_port, decode_responses=True)
    yield conn
    keys = [key async for key in conn.scan_iter(match=f"{prefix}*")]
    if keys:
        await conn.delete(*keys)
    await conn.aclose()


def _wait_gone(pid: int, host: str, port: int) -> None:
    """Block until the process has exited and its port is free again.

    A forked child (an AOF rewrite in progress) shares the listening socket and may outlive
    the main process by a moment after SIGKILL; restarting before it is gone finds the port
    taken.
    """
    deadline = time.monotonic() + 10
    while (pid_is_alive(pid) or not port_is_free(host, port)) and time.monotonic() < deadline:
        time.sleep(0.05)


async def _restart(server: ManagedServer, crash: bool) -> None:
    """Stop (or kill) the server and start it again; it is running again whatever happens."""
    pid = server.pid()
    if pid is None:
        pytest.skip("this Redis was not started by this checkout's stack; cannot restart it")
    try:
        if crash:
            os.killpg(pid, signal.SIGKILL)
            await asyncio.to_thread(
                _wait_gone, pid, server.settings.host, server.settings.redis_port
            )
        else:
            server.stop(_progress)
    finally:
        # Later tests share the session's server: bring it back even if stopping failed.
        server.start(_progress)
        await server.wait_ready(_progress)


async def test_round_trip(client: aioredis.Redis, prefix: str) -> None:
    """A value, a list and a hash written under the test's prefix read back unchanged."""
    await client.set(f"{prefix}string", "héllo")
    await client.rpush(f"{prefix}list", "a", "b", "c")
    await client.hset(f"{prefix}hash", mapping={"org": "org-1", "count": "3"})

    assert await client.get(f"{prefix}string") == "héllo"
    assert await client.lrange(f"{prefix}list", 0, -1) == ["a", "b", "c"]
    assert await client.hgetall(f"{prefix}hash") == {"org": "org-1", "count": "3"}


async def test_append_only_file_is_on(client: aioredis.Redis) -> None:
    """Writes go to the AOF, fsynced every second, and nothing is ever evicted."""
    config = await client.config_get("append*")
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert (await client.config_get("maxmemory-policy"))["maxmemory-policy"] == "noeviction"
    assert (await client.info("persistence"))["aof_enabled"] == 1


async def test_data_survives_a_restart(
    redis_server: ManagedServer, client: aioredis.Redis, prefix: str
) -> None:
    """Keys written before a stop and start of the server are there afterwards."""
    await client.rpush(f"{prefix}events", "batch-1", "batch-2")

    await _restart(redis_server, crash=False)

    assert await client.lrange(f"{prefix}events", 0, -1) == ["batch-1", "batch-2"]


async def test_acknowledged_writes_survive_a_crash(
    redis_server: ManagedServer, client: aioredis.Redis, prefix: str
) -> None:
    """Writes Redis acknowledged are there after it is killed with SIGKILL and restarted."""
    for number in range(100):
        await client.rpush(f"{prefix}events", f"batch-{number}")

    await _restart(redis_server, crash=True)

    assert await client.llen(f"{prefix}events") == 100
    assert await client.lindex(f"{prefix}events", -1) == "batch-99"
