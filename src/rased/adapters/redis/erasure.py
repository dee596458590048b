"""Subject erasure in Redis: buffered transactions of a session, index entries, user profiles.

Buffers are found by key pattern (``P events:{org/session/*``: every key of every
transaction of the session, see `RedisEventBuffer`), and a user's sessions by the user id
recorded twice there: in each buffer's ``:state`` hash (field ``u``) while batches are
buffered, and in the meta of each segment moved to flushing (the ``:pending`` hash, user id
last), because a move deletes the ``:state`` hash and a segment may sit in flushing (a
publish in progress, or a crash awaiting recovery). SCAN walks the keyspace in small steps
without blocking Redis; erasure is rare, and the buffers hold minutes of data, so this is
cheaper than maintaining a per-session index on every append. Index entries (idle deadlines
and flushes in progress) name the transaction, so they are removed from every shard.

A session's rate-limit bucket (ingestion's, under the same prefix) names the session too:
it holds only a time, but its key is deleted with the buffers. Not covered: Redis Cluster,
where SCAN walks one node (each primary would have to be scanned).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from rased.adapters.redis.profiles import RedisProfileStore
from rased.adapters.redis.rate_limits import RATE_LIMIT_PREFIX, session_limit_key
from rased.common.errors import DependencyUnavailable

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")
_SCAN_COUNT = 1000


def glob_escape(text: str) -> str:
    """Return `text` matched literally by a Redis glob pattern."""
    return _GLOB_SPECIAL.sub(r"\\\1", text)


# Characters RedisEventBuffer refuses in a prefix: they would break the transaction's tag.
_FORBIDDEN = ("/", "{", "}")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _tag_parts(key: str) -> list[str]:
    """Return [org, session, transaction] of a buffer key ``P events:{org/session/txn}...``."""
    return key[key.index("{") + 1 : key.rindex("}")].split("/")


def _unavailable(exc: BaseException) -> DependencyUnavailable:
    return DependencyUnavailable(f"Redis unavailable: {type(exc).__name__}")


class RedisSubjectData:
    """A subject's buffers and index entries (ingestion's prefix) and profile (scoring's)."""

    def __init__(
        self, client: aioredis.Redis, buffer_prefix: str = "rased:", profile_prefix: str = ""
    ) -> None:
        if any(char in buffer_prefix for char in _FORBIDDEN):
            raise ValueError(f"buffer_prefix must not contain '/', '{{' or '}}': {buffer_prefix!r}")
        self._redis = client
        self._buffer = buffer_prefix
        self._profiles = RedisProfileStore(client, profile_prefix)

    def _events_pattern(self, organization_id: str, session: str | None, suffix: str = "") -> str:
        org = glob_escape(organization_id)
        if session is None:
            return f"{glob_escape(self._buffer)}events:{{{org}/*}}:{suffix}"
        return f"{glob_escape(self._buffer)}events:{{{org}/{glob_escape(session)}/*"

    async def _scan(self, pattern: str) -> list[str]:
        try:
            return [
                _text(key) async for key in self._redis.scan_iter(match=pattern, count=_SCAN_COUNT)
            ]
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc

    async def sessions_of_user(self, organization_id: str, user_id: str) -> set[str]:
        """Return the sessions with batches buffered, or segments flushing, for the user."""
        states = await self._scan(self._events_pattern(organization_id, None, "state"))
        pendings = await self._scan(self._events_pattern(organization_id, None, "pending"))
        if not states and not pendings:
            return set()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in states:
                    pipe.hget(key, "u")
                for key in pendings:
                    pipe.hgetall(key)
                replies = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
        sessions: set[str] = set()
        for key, user in zip(states, replies[: len(states)], strict=True):
            if user is not None and _text(user) == user_id:
                sessions.add(_tag_parts(key)[1])
        for key, fields in zip(pendings, replies[len(states) :], strict=True):
            # segment -> "segment,reason,...,token,user_id"; "t:<token>" -> segment.
            metas = [
                _text(v).split(",", 10) for f, v in fields.items() if not _text(f).startswith("t:")
            ]
            if any(len(meta) == 11 and meta[10] == user_id for meta in metas):
                sessions.add(_tag_parts(key)[1])
        return sessions

    async def _session_keys(self, organization_id: str, sessions: Collection[str]) -> list[str]:
        keys: list[str] = []
        for session in sessions:
            keys += await self._scan(self._events_pattern(organization_id, session))
        return keys

    async def transactions(self, organization_id: str, sessions: Collection[str]) -> set[str]:
        """Return the transactions of the sessions that have a buffer (or its leftovers)."""
        keys = await self._session_keys(organization_id, sessions)
        return {_tag_parts(key)[2] for key in keys}

    async def erase(
        self, organization_id: str, sessions: Collection[str], counts: Counter[str]
    ) -> None:
        """Delete the sessions' buffer keys and rate-limit buckets, then their index entries."""
        keys = await self._session_keys(organization_id, sessions)
        try:
            if keys:
                # One DEL per key: on Redis Cluster the keys of two transactions live in
                # different slots, which one multi-key DEL may not span.
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key in keys:
                        pipe.delete(key)
                    counts["redis_buffer_keys"] += sum(await pipe.execute())
            limits = self._buffer + RATE_LIMIT_PREFIX
            async with self._redis.pipeline(transaction=False) as pipe:
                for session in sessions:
                    pipe.delete(session_limit_key(limits, organization_id, session))
                counts["redis_rate_limit_keys"] += sum(await pipe.execute())
            indexes = [
                *await self._scan(f"{glob_escape(self._buffer)}deadlines:*"),
                *await self._scan(f"{glob_escape(self._buffer)}flushes:*"),
            ]
            org = glob_escape(organization_id)
            for index in indexes:
                for session in sessions:
                    members = [
                        member
                        async for member, _ in self._redis.zscan_iter(
                            index, match=f"{org}/{glob_escape(session)}/*", count=_SCAN_COUNT
                        )
                    ]
                    if members:
                        counts["redis_index_entries"] += await self._redis.zrem(index, *members)
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc

    async def erase_profile(self, organization_id: str, user_id: str, counts: Counter[str]) -> None:
        """Delete the user's behavioral profile."""
        key = self._profiles.key(organization_id, user_id)
        try:
            counts["redis_profiles"] += await self._redis.delete(key)
        except (RedisError, OSError) as exc:
            raise _unavailable(exc) from exc
