"""`ProfileStore` in Redis: one JSON document per (organization, user), with a TTL.

Keys carry the pair as a hash tag (`profile:{org:user}`), so on Redis Cluster each profile
lives in one slot and reads of several users are pipelined GETs, never a cross-slot MGET.
Updates are read-modify-write without a lock: two transactions of one user scored at the
same moment by two workers keep the later write (a profile is a summary; losing one of two
simultaneous updates only slows its learning).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from rased.common.errors import DependencyUnavailable
from rased.scoring.profile import UserProfile


class RedisProfileStore:
    """User profiles as JSON strings that expire `ttl` after their last update."""

    def __init__(
        self, redis: aioredis.Redis, key_prefix: str = "", ttl: timedelta = timedelta(days=180)
    ) -> None:
        self._redis = redis
        self._prefix = key_prefix
        self._ttl = ttl

    def key(self, organization_id: str, user_id: str) -> str:
        """Return the Redis key of a user's profile."""
        return f"{self._prefix}profile:{{{organization_id}:{user_id}}}"

    async def load(self, keys: Sequence[tuple[str, str]]) -> list[UserProfile | None]:
        """Return each (organization, user)'s profile, None where there is none."""
        if not keys:
            return []
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for org, user in keys:
                    pipe.get(self.key(org, user))
                values = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable(f"profile store unavailable: {exc}") from exc
        return [
            None if value is None else UserProfile.from_json(json.loads(value)) for value in values
        ]

    async def save(self, organization_id: str, user_id: str, profile: UserProfile) -> None:
        """Replace the user's profile and restart its expiry."""
        body = json.dumps(profile.to_json(), separators=(",", ":"))
        try:
            await self._redis.set(self.key(organization_id, user_id), body, ex=self._ttl)
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable(f"profile store unavailable: {exc}") from exc
