"""Per-organization and per-session rate limits, counted in Redis by the `limits` library."""

from __future__ import annotations

import time
from datetime import timedelta

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from rased.common.errors import QuotaExceeded


class RateLimits:
    """Sliding-window counters shared by every ingestion process through Redis.

    A sliding window counter approximates a token bucket with two counters per key and
    is what `limits` offers atomically on Redis; bursts at a window's edge are smoothed.
    """

    def __init__(
        self, redis_url: str, per_organization: str, per_session: str, key_prefix: str = "rl"
    ) -> None:
        """Connect lazily to Redis at `redis_url`; limits use the `limits` notation."""
        self.storage = RedisStorage(
            _limits_uri(redis_url), implementation="redispy", key_prefix=key_prefix
        )
        self.limiter = SlidingWindowCounterRateLimiter(self.storage)
        self.per_organization: RateLimitItem = parse(per_organization)
        self.per_session: RateLimitItem = parse(per_session)

    async def hit(self, organization_id: str, session_id: str) -> None:
        """Count one batch; raise QuotaExceeded with the wait when a limit is reached."""
        checks = (
            (self.per_organization, ("org", organization_id), "organization"),
            (self.per_session, ("session", organization_id, session_id), "session"),
        )
        for item, identifiers, scope in checks:
            if not await self.limiter.hit(item, *identifiers):
                stats = await self.limiter.get_window_stats(item, *identifiers)
                wait = max(stats.reset_time - time.time(), 0.001)
                raise QuotaExceeded(
                    f"rate limit of {item} per {scope} reached; retry in {wait:.1f} s",
                    timedelta(seconds=wait),
                )


def _limits_uri(redis_url: str) -> str:
    # `limits` picks its async backend from the scheme.
    for scheme in ("redis://", "rediss://"):
        if redis_url.startswith(scheme):
            return "async+" + redis_url
    raise ValueError(f"not a Redis URL: {redis_url}")
