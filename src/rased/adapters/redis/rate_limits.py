"""Per-organization and per-session rate limits in Redis: one script, shared round trips.

Both limits are checked and counted by one script (GCRA, see lua/rate_limit.lua) sent
through a `PipelineCoalescer`, so concurrent batches share round trips. The `limits`
library did this with two unshared round trips per batch (one per window), a sixth of the
ingestion path's CPU, and counted the organization's batch even when the session's limit
refused it. Its notation ("2000/second") and parser are kept for the settings.
"""

from __future__ import annotations

from datetime import timedelta

import redis.asyncio as aioredis
from limits import RateLimitItem, parse
from redis.asyncio.client import Pipeline

from rased.adapters.redis.lua_scripts import lua_source
from rased.adapters.redis.pipelining import PipelineCoalescer
from rased.common.errors import QuotaExceeded

_SCOPES = {1: "organization", 2: "session"}
# Appended to the service's Redis key prefix for the rate-limit buckets.
RATE_LIMIT_PREFIX = "rl:"


def session_limit_key(prefix: str, organization_id: str, session_id: str) -> str:
    """Return the key of a session's bucket under `prefix` (RedisRateLimits' key_prefix)."""
    # The organization's id is the hash tag: with the org's key, one cluster slot.
    return f"{prefix}{{{organization_id}}}:session:{session_id}"


def parse_limit(notation: str) -> RateLimitItem:
    """Parse a limit such as "50/second" or "600 per minute"; raise ValueError if malformed."""
    item = parse(notation)
    if item.amount <= 0:
        raise ValueError(f"a rate limit must allow at least one batch: {notation!r}")
    return item


class RedisRateLimits:
    """Counts batches against an organization's and a session's limit, in Redis.

    Shared by every ingestion process: the counters and the clock are Redis'. A batch
    resent by redis-py after a dropped connection may be counted twice (never refused
    unfairly for long: the bucket refills at the limit's rate).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        per_organization: str,
        per_session: str,
        key_prefix: str = "rl:",
    ) -> None:
        """Use `client` (shared with the buffer); limits in the `limits` notation."""
        self._client = client
        self._prefix = key_prefix
        self._limits = (parse_limit(per_organization), parse_limit(per_session))
        self._args = tuple(
            number for item in self._limits for number in (item.amount, item.get_expiry() * 1000)
        )
        self._script = client.register_script(lua_source("rate_limit.lua"))
        self._pipelines = PipelineCoalescer(
            client, self._load_script, what="the rate limits (Redis)"
        )

    async def _load_script(self) -> None:
        self._script.sha = await self._client.script_load(self._script.script)

    async def hit(self, organization_id: str, session_id: str) -> None:
        """Count one batch; raise QuotaExceeded with the wait when a limit is reached.

        Raises:
            DependencyUnavailable: Redis is unreachable.
        """
        keys = (
            f"{self._prefix}{{{organization_id}}}:org",
            session_limit_key(self._prefix, organization_id, session_id),
        )

        def build(pipe: Pipeline) -> None:
            pipe.evalsha(self._script.sha, len(keys), *keys, *self._args)

        (reply,) = await self._pipelines.execute(build)
        refused, wait_ms = int(reply[0]), int(reply[1])
        if refused:
            item = self._limits[refused - 1]
            wait = timedelta(milliseconds=max(wait_ms, 1))
            raise QuotaExceeded(
                f"rate limit of {item} per {_SCOPES[refused]} reached; retry in {_said(wait)}",
                wait,
            )


def _said(wait: timedelta) -> str:
    """A wait as people read it: milliseconds under a second, else seconds."""
    if wait < timedelta(seconds=1):
        return f"{wait // timedelta(milliseconds=1)} ms"
    return f"{wait.total_seconds():.1f} s"
