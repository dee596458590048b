"""What the admin API reads and changes beyond creating keys: organizations, key expiry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from rased.adapters.postgres.keys import (
    _KEY_COLUMNS,
    ApiKeyRecord,
    _key_record,
    _parse_uuid,
    _postgres_errors,
)


@dataclass(frozen=True)
class OrganizationRecord:
    """An organization as stored."""

    organization_id: str
    name: str
    retention_days: int
    created_at: datetime
    allow_private_webhook_targets: bool = False


_ORG_COLUMNS = "id, name, retention_days, created_at, allow_private_webhook_targets"


def _org_record(row: asyncpg.Record) -> OrganizationRecord:
    return OrganizationRecord(
        organization_id=str(row["id"]),
        name=row["name"],
        retention_days=row["retention_days"],
        created_at=row["created_at"],
        allow_private_webhook_targets=row["allow_private_webhook_targets"],
    )


class OrganizationDirectory:
    """Reads, pages and updates organizations; ids that are not UUIDs are simply not found."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get(self, organization_id: str) -> OrganizationRecord | None:
        """Return the organization, or None."""
        org = _parse_uuid(organization_id)
        if org is None:
            return None
        async with _postgres_errors():
            row = await self._pool.fetchrow(
                f"SELECT {_ORG_COLUMNS} FROM organizations WHERE id = $1",  # noqa: S608 - constant columns
                org,
            )
        return None if row is None else _org_record(row)

    async def page(
        self, limit: int, after: tuple[datetime, str] | None = None
    ) -> list[OrganizationRecord]:
        """Return up to `limit` organizations, oldest first, after a (created_at, id) cursor."""
        after_time, after_id = after if after is not None else (None, None)
        async with _postgres_errors():
            rows = await self._pool.fetch(
                f"SELECT {_ORG_COLUMNS} FROM organizations "  # noqa: S608 - constant columns
                "WHERE $1::timestamptz IS NULL OR (created_at, id) > ($1, $2::uuid) "
                "ORDER BY created_at, id LIMIT $3",
                after_time,
                _parse_uuid(after_id) if after_id else None,
                limit,
            )
        return [_org_record(row) for row in rows]

    async def set_retention(self, organization_id: str, days: int) -> OrganizationRecord | None:
        """Set the retention in days; return the updated organization, or None."""
        org = _parse_uuid(organization_id)
        if org is None:
            return None
        async with _postgres_errors():
            row = await self._pool.fetchrow(
                f"UPDATE organizations SET retention_days = $2 WHERE id = $1 "  # noqa: S608 - constant columns
                f"RETURNING {_ORG_COLUMNS}",
                org,
                days,
            )
        return None if row is None else _org_record(row)

    async def allow_private_webhook_targets(self, organization_id: str, allowed: bool) -> None:
        """Set whether the organization's webhooks may target private or loopback addresses."""
        org = _parse_uuid(organization_id)
        if org is None:
            return
        async with _postgres_errors():
            await self._pool.execute(
                "UPDATE organizations SET allow_private_webhook_targets = $2 WHERE id = $1",
                org,
                allowed,
            )

    async def delete(self, organization_id: str) -> None:
        """Delete an organization and (by cascade) its keys; used to undo a failed creation."""
        org = _parse_uuid(organization_id)
        if org is None:
            return
        async with _postgres_errors():
            await self._pool.execute("DELETE FROM organizations WHERE id = $1", org)


class KeyLifecycle:
    """Finds one organization's key and sets expiries (rotation overlap windows)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def find(self, organization_id: str, key_id: str) -> ApiKeyRecord | None:
        """Return the organization's key with this id (revoked or not), or None."""
        org, key = _parse_uuid(organization_id), _parse_uuid(key_id)
        if org is None or key is None:
            return None
        async with _postgres_errors():
            row = await self._pool.fetchrow(
                f"SELECT {_KEY_COLUMNS} FROM api_keys "  # noqa: S608 - constant columns
                "WHERE key_id = $1 AND organization_id = $2",
                key,
                org,
            )
        return None if row is None else _key_record(row)

    async def expire_active(
        self, organization_id: str, key_id: str, at: datetime
    ) -> ApiKeyRecord | None:
        """Make an active key expire at `at` (never later than it already would).

        Returns the updated key, or None when the organization has no such active key.
        """
        org, key = _parse_uuid(organization_id), _parse_uuid(key_id)
        if org is None or key is None:
            return None
        async with _postgres_errors():
            row = await self._pool.fetchrow(
                "UPDATE api_keys SET expires_at = LEAST(COALESCE(expires_at, $3), $3) "  # noqa: S608 - constant columns
                "WHERE key_id = $1 AND organization_id = $2 AND revoked_at IS NULL "
                "AND (expires_at IS NULL OR expires_at > now()) "
                f"RETURNING {_KEY_COLUMNS}",
                key,
                org,
                at,
            )
        return None if row is None else _key_record(row)

    async def expire_encryption_keys(
        self, organization_id: str, keep_key_id: str, at: datetime
    ) -> int:
        """Make every unexpired encryption key of an organization but one expire at `at`."""
        org, keep = _parse_uuid(organization_id), _parse_uuid(keep_key_id)
        if org is None or keep is None:
            return 0
        async with _postgres_errors():
            status = await self._pool.execute(
                "UPDATE encryption_keys SET expires_at = LEAST(COALESCE(expires_at, $3), $3) "
                "WHERE organization_id = $1 AND key_id <> $2 "
                "AND (expires_at IS NULL OR expires_at > now())",
                org,
                keep,
                at,
            )
        return int(status.split()[-1])
