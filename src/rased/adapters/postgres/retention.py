"""Organizations' retention (days) from PostgreSQL, cached: the persistence worker's TTLs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import asyncpg

from rased.adapters.postgres.keys import _parse_uuid, _postgres_errors

logger = logging.getLogger(__name__)


class PostgresRetention:
    """Reads `organizations.retention_days`; a change applies to rows written after the cache.

    An organization that is not in PostgreSQL (deleted, or not created yet by the admin
    API) gets `default_days`: ingestion accepted its events, and dropping them is not the
    persistence worker's call.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        default_days: int,
        cache_ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._default_days = default_days
        self._cache_ttl_s = cache_ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[int, float]] = {}

    async def retention_days(self, organization_id: str) -> int:
        """Return the organization's retention in days (cached for cache_ttl_s)."""
        cached = self._cache.get(organization_id)
        now = self._clock()
        if cached is not None and cached[1] > now:
            return cached[0]
        days = await self._load(organization_id)
        self._cache[organization_id] = (days, now + self._cache_ttl_s)
        return days

    async def _load(self, organization_id: str) -> int:
        org = _parse_uuid(organization_id)
        days: int | None = None
        if org is not None:
            async with _postgres_errors():
                days = await self._pool.fetchval(
                    "SELECT retention_days FROM organizations WHERE id = $1", org
                )
        if days is None:
            logger.warning(
                "organization unknown to PostgreSQL; default retention of %d days",
                self._default_days,
                extra={"organization_id": organization_id},
            )
            return self._default_days
        return int(days)
