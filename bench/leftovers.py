"""Removing what a benchmark run wrote to the stack: organizations, topics, Redis keys."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence

import asyncpg
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient


@contextlib.contextmanager
def warn_on_failure(what: str) -> Iterator[None]:
    """Run one cleanup step; print why it failed instead of hiding the steps after it."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - a cleanup step that fails must not hide the rest
        print(f"could not remove {what}: {exc!r}", flush=True)


async def drop_organizations(pool: asyncpg.Pool, organization_ids: Sequence[str]) -> None:
    """Delete the organizations; their keys, results, cursors and statuses cascade."""
    await pool.execute(
        "DELETE FROM organizations WHERE id = ANY($1::uuid[])",
        [uuid.UUID(org) for org in organization_ids],
    )


async def drop_topics(bootstrap_servers: str, names: Sequence[str]) -> None:
    """Delete those of the topics that exist (their groups' offsets go with them)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        present = [name for name in names if name in existing]
        if present:
            await admin.delete_topics(present)
    finally:
        await admin.close()


async def drop_redis_keys(redis_url: str, prefix: str) -> None:
    """Delete every key that starts with `prefix`, a thousand at a time."""
    redis = aioredis.Redis.from_url(redis_url)
    try:
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await redis.delete(*batch)
                batch.clear()
        if batch:
            await redis.delete(*batch)
    finally:
        await redis.aclose()
