"""Rate limits in the real Redis: bursts, refills, the wait told, and scopes kept apart."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import redis.asyncio as aioredis

from rased.adapters.redis.rate_limits import RedisRateLimits
from rased.common.errors import DependencyUnavailable, QuotaExceeded
from rased.devstack.base import ManagedServer


@pytest.fixture
async def client(redis_server: ManagedServer) -> AsyncIterator[aioredis.Redis]:
    settings = redis_server.settings
    redis = aioredis.Redis(host=settings.host, port=settings.redis_port)
    yield redis
    await redis.aclose()


def _limits(client: aioredis.Redis, per_org: str, per_session: str) -> RedisRateLimits:
    return RedisRateLimits(client, per_org, per_session, key_prefix=f"t{uuid.uuid4().hex[:8]}:")


async def _count_allowed(limits: RedisRateLimits, org: str, session: str, tries: int) -> int:
    allowed = 0
    for _ in range(tries):
        try:
            await limits.hit(org, session)
            allowed += 1
        except QuotaExceeded:
            pass
    return allowed


async def test_a_session_gets_its_burst_then_is_told_how_long_to_wait(
    client: aioredis.Redis,
) -> None:
    limits = _limits(client, "1000/minute", "10/minute")
    assert await _count_allowed(limits, "org-a", "sess-1", 10) == 10
    with pytest.raises(QuotaExceeded) as refused:
        await limits.hit("org-a", "sess-1")
    # One batch more every 60/10 = 6 s.
    assert timedelta(seconds=5) < refused.value.retry_after <= timedelta(seconds=6)
    assert str(refused.value).startswith("rate limit of 10 per 1 minute per session reached")
    assert str(refused.value).endswith(" s")
    # Other sessions of the organization are not held back.
    assert await _count_allowed(limits, "org-a", "sess-2", 10) == 10


async def test_the_bucket_refills_at_the_limits_rate(client: aioredis.Redis) -> None:
    limits = _limits(client, "1000/second", "5/second")
    assert await _count_allowed(limits, "org-b", "sess-1", 5) == 5
    with pytest.raises(QuotaExceeded, match=r"retry in \d+ ms$"):
        await limits.hit("org-b", "sess-1")
    with pytest.raises(QuotaExceeded):
        await limits.hit("org-b", "sess-1")
    await asyncio.sleep(0.45)  # two batches' worth (one every 200 ms)
    assert await _count_allowed(limits, "org-b", "sess-1", 5) == 2


async def test_the_organization_limit_spans_sessions_and_a_session_refusal_costs_it_nothing(
    client: aioredis.Redis,
) -> None:
    limits = _limits(client, "6/minute", "2/minute")
    # sess-1 sends 5: 2 counted, 3 refused by the session limit (not counted for the org).
    assert await _count_allowed(limits, "org-c", "sess-1", 5) == 2
    assert await _count_allowed(limits, "org-c", "sess-2", 2) == 2
    assert await _count_allowed(limits, "org-c", "sess-3", 2) == 2
    with pytest.raises(QuotaExceeded) as refused:
        await limits.hit("org-c", "sess-4")
    assert "per organization" in str(refused.value)
    # Another organization has its own budget.
    assert await _count_allowed(limits, "org-d", "sess-1", 2) == 2


async def test_concurrent_batches_are_counted_exactly(client: aioredis.Redis) -> None:
    """Batches in flight together (sharing pipelines) never pass the limit."""
    limits = _limits(client, "100000/minute", "50/minute")
    outcomes = await asyncio.gather(
        *(limits.hit("org-e", "sess-1") for _ in range(80)), return_exceptions=True
    )
    assert sum(outcome is None for outcome in outcomes) == 50
    assert all(isinstance(o, QuotaExceeded) for o in outcomes if o is not None)


async def test_counters_lapse_once_the_bucket_is_full_again(client: aioredis.Redis) -> None:
    limits = _limits(client, "2/second", "2/second")
    await limits.hit("org-f", "sess-1")
    keys = await client.keys(f"{limits._prefix}*")
    assert len(keys) == 2
    # One batch of two per second: full again (and gone) 500 ms later.
    lifetimes = [await client.pttl(key) for key in keys]
    assert all(0 < lifetime <= 500 for lifetime in lifetimes), lifetimes


async def test_redis_down_is_a_dependency_error(redis_server: ManagedServer) -> None:
    unused = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    limits = _limits(unused, "10/second", "10/second")
    with pytest.raises(DependencyUnavailable, match="rate limits"):
        await limits.hit("org-g", "sess-1")
    await unused.aclose()
