"""Webhook deliveries and their attempts in PostgreSQL: creation, claiming, outcomes, admin."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from rased.adapters.postgres.keys import _parse_uuid, _postgres_errors


class DeliveryStatus(enum.StrEnum):
    """Where a delivery stands, as stored in `webhook_deliveries.status`."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    DEAD_LETTERED = "dead_lettered"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class NewDelivery:
    """A notification to create for one endpoint."""

    endpoint_id: str
    body: str


@dataclass(frozen=True)
class DeliveryRecord:
    """A delivery as the admin API shows it."""

    delivery_id: str
    organization_id: str
    endpoint_id: str
    event_type: str
    transaction_id: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int
    last_error: str
    created_at: datetime


@dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery a worker holds for one attempt, until the claim's lease runs out."""

    delivery_id: str
    organization_id: str
    endpoint_id: str
    url: str
    body: str
    attempt: int  # the number of this attempt within the delivery (1, 2, ...)
    round_attempt: int  # the number within the current schedule round (1, 2, ...)
    allow_private_targets: bool
    claim_token: uuid.UUID


@dataclass(frozen=True)
class AttemptOutcome:
    """What one attempt gave, as recorded."""

    attempted_at: datetime
    duration_ms: int
    status_code: int = 0
    error: str = ""


_COLUMNS = (
    "delivery_id, organization_id, endpoint_id, event_type, transaction_id, status, attempts, "
    "next_attempt_at, last_status_code, last_error, created_at"
)


def _record(row: asyncpg.Record) -> DeliveryRecord:
    return DeliveryRecord(
        delivery_id=str(row["delivery_id"]),
        organization_id=str(row["organization_id"]),
        endpoint_id=str(row["endpoint_id"]),
        event_type=row["event_type"],
        transaction_id=row["transaction_id"],
        status=DeliveryStatus(row["status"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_status_code=row["last_status_code"],
        last_error=row["last_error"],
        created_at=row["created_at"],
    )


# Claims due deliveries: SKIP LOCKED keeps concurrent workers off each other's rows, and
# moving next_attempt_at past the lease (with a fresh claim token) keeps them off the rows
# after this transaction commits, while the attempt is in flight. A delivery whose endpoint
# was disabled or deleted is cancelled instead of claimed.
_CLAIM = """
WITH due AS (
    SELECT d.delivery_id FROM webhook_deliveries d
    WHERE d.status = 'pending' AND d.next_attempt_at <= now()
    ORDER BY d.next_attempt_at
    LIMIT $1
    FOR UPDATE OF d SKIP LOCKED
), cancelled AS (
    UPDATE webhook_deliveries d
    SET status = 'cancelled', next_attempt_at = NULL, claim_token = NULL, updated_at = now(),
        last_error = CASE WHEN e.deleted_at IS NOT NULL THEN 'endpoint deleted'
                          ELSE 'endpoint disabled' END
    FROM due, webhook_endpoints e
    WHERE d.delivery_id = due.delivery_id AND e.endpoint_id = d.endpoint_id
      AND (NOT e.enabled OR e.deleted_at IS NOT NULL)
    RETURNING d.delivery_id
)
UPDATE webhook_deliveries d
SET next_attempt_at = now() + $2::interval, claim_token = gen_random_uuid(),
    attempts = d.attempts + 1, round_attempts = d.round_attempts + 1, updated_at = now()
FROM due, webhook_endpoints e, organizations o
WHERE d.delivery_id = due.delivery_id AND e.endpoint_id = d.endpoint_id
  AND o.id = d.organization_id AND e.enabled AND e.deleted_at IS NULL
RETURNING d.delivery_id, d.organization_id, d.endpoint_id, e.url, d.body, d.attempts,
          d.round_attempts, o.allow_private_webhook_targets, d.claim_token
"""


class WebhookDeliveryStore:
    """Deliveries of one PostgreSQL database; admin reads always name the organization."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def endpoints_for(self, organization_id: str, event_type: str) -> list[tuple[str, bool]]:
        """Return (endpoint id, include_scores) of the endpoints that take this event now."""
        org = _parse_uuid(organization_id)
        if org is None:
            return []
        async with _postgres_errors():
            rows = await self._pool.fetch(
                "SELECT endpoint_id, include_scores FROM webhook_endpoints "
                "WHERE organization_id = $1 AND enabled AND deleted_at IS NULL "
                "AND (cardinality(event_types) = 0 OR $2 = ANY (event_types))",
                org,
                event_type,
            )
        return [(str(row["endpoint_id"]), row["include_scores"]) for row in rows]

    async def create(
        self,
        organization_id: str,
        event_type: str,
        transaction_id: str,
        segment: int,
        session_id: str,
        deliveries: Sequence[NewDelivery],
        first_wait: timedelta = timedelta(0),
    ) -> int:
        """Create the deliveries due now; existing ones (a redelivered message) stay as they are.

        Returns how many were new.
        """
        if not deliveries:
            return 0
        org = uuid.UUID(organization_id)
        async with _postgres_errors():
            rows = await self._pool.fetch(
                "INSERT INTO webhook_deliveries (delivery_id, organization_id, endpoint_id, "
                "event_type, transaction_id, segment, session_id, body, next_attempt_at) "
                "SELECT gen_random_uuid(), $1, e, $2, $3, $4, $5, b, now() + $8::interval "
                "FROM unnest($6::uuid[], $7::text[]) AS n(e, b) "
                "ON CONFLICT (endpoint_id, transaction_id, segment, event_type) DO NOTHING "
                "RETURNING delivery_id",
                org,
                event_type,
                transaction_id,
                segment,
                session_id,
                [uuid.UUID(d.endpoint_id) for d in deliveries],
                [d.body for d in deliveries],
                first_wait,
            )
        return len(rows)

    async def claim_due(self, limit: int, lease: timedelta) -> list[ClaimedDelivery]:
        """Claim up to `limit` due deliveries for one attempt each (cancelling orphaned ones)."""
        async with _postgres_errors():
            rows = await self._pool.fetch(_CLAIM, limit, lease)
        return [
            ClaimedDelivery(
                delivery_id=str(row["delivery_id"]),
                organization_id=str(row["organization_id"]),
                endpoint_id=str(row["endpoint_id"]),
                url=row["url"],
                body=row["body"],
                attempt=row["attempts"],
                round_attempt=row["round_attempts"],
                allow_private_targets=row["allow_private_webhook_targets"],
                claim_token=row["claim_token"],
            )
            for row in rows
        ]

    async def record(
        self,
        claimed: ClaimedDelivery,
        outcome: AttemptOutcome,
        status: DeliveryStatus,
        next_attempt_at: datetime | None = None,
        disable_endpoint_reason: str = "",
    ) -> bool:
        """Record an attempt and the delivery's new state; False when the claim was lost.

        A claim is lost when its lease ran out and another worker claimed the delivery: the
        attempt is then left unrecorded rather than recorded twice under one number.
        """
        async with _postgres_errors(), self._pool.acquire() as conn, conn.transaction():
            updated = await conn.execute(
                "UPDATE webhook_deliveries SET status = $3, next_attempt_at = $4, "
                "claim_token = NULL, last_status_code = $5, last_error = $6, updated_at = now() "
                "WHERE delivery_id = $1 AND claim_token = $2",
                uuid.UUID(claimed.delivery_id),
                claimed.claim_token,
                status.value,
                next_attempt_at,
                outcome.status_code,
                outcome.error,
            )
            if updated != "UPDATE 1":
                return False
            await conn.execute(
                "INSERT INTO webhook_delivery_attempts (delivery_id, attempt, attempted_at, "
                "status_code, error, duration_ms) VALUES ($1, $2, $3, $4, $5, $6) "
                "ON CONFLICT DO NOTHING",
                uuid.UUID(claimed.delivery_id),
                claimed.attempt,
                outcome.attempted_at,
                outcome.status_code,
                outcome.error,
                outcome.duration_ms,
            )
            if disable_endpoint_reason:
                await conn.execute(
                    "UPDATE webhook_endpoints SET enabled = false, disabled_reason = $2, "
                    "updated_at = now() WHERE endpoint_id = $1",
                    uuid.UUID(claimed.endpoint_id),
                    disable_endpoint_reason,
                )
        return True

    async def attempts(self, delivery_id: str) -> list[AttemptOutcome]:
        """Return a delivery's recorded attempts, first first."""
        delivery = _parse_uuid(delivery_id)
        if delivery is None:
            return []
        async with _postgres_errors():
            rows = await self._pool.fetch(
                "SELECT attempted_at, duration_ms, status_code, error "
                "FROM webhook_delivery_attempts WHERE delivery_id = $1 ORDER BY attempt",
                delivery,
            )
        return [
            AttemptOutcome(r["attempted_at"], r["duration_ms"], r["status_code"], r["error"])
            for r in rows
        ]

    async def page(
        self,
        organization_id: str,
        limit: int,
        status: DeliveryStatus | None = None,
        before: tuple[datetime, str] | None = None,
    ) -> list[DeliveryRecord]:
        """Return the organization's deliveries, newest first, after a keyset position."""
        org = _parse_uuid(organization_id)
        if org is None:
            return []
        before_at, before_id = before if before else (None, None)
        async with _postgres_errors():
            rows = await self._pool.fetch(
                f"SELECT {_COLUMNS} FROM webhook_deliveries "  # noqa: S608 - constant columns
                "WHERE organization_id = $1 AND ($2::text IS NULL OR status = $2) "
                "AND ($3::timestamptz IS NULL OR (created_at, delivery_id) < ($3, $4::uuid)) "
                "ORDER BY created_at DESC, delivery_id DESC LIMIT $5",
                org,
                None if status is None else status.value,
                before_at,
                None if before_id is None else uuid.UUID(before_id),
                limit,
            )
        return [_record(row) for row in rows]

    async def get(self, organization_id: str, delivery_id: str) -> DeliveryRecord | None:
        """Return the organization's delivery, or None."""
        org, delivery = _parse_uuid(organization_id), _parse_uuid(delivery_id)
        if org is None or delivery is None:
            return None
        async with _postgres_errors():
            row = await self._pool.fetchrow(
                f"SELECT {_COLUMNS} FROM webhook_deliveries "  # noqa: S608 - constant columns
                "WHERE organization_id = $1 AND delivery_id = $2",
                org,
                delivery,
            )
        return None if row is None else _record(row)

    async def redeliver(self, organization_id: str, delivery_id: str) -> DeliveryRecord | None:
        """Make a finished delivery pending again with a fresh schedule, due now.

        A pending delivery is returned unchanged (its attempts are already scheduled).
        Returns None when the organization has no such delivery.
        """
        org, delivery = _parse_uuid(organization_id), _parse_uuid(delivery_id)
        if org is None or delivery is None:
            return None
        async with _postgres_errors():
            row = await self._pool.fetchrow(
                "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(), "  # noqa: S608 - constant columns
                "round_attempts = 0, claim_token = NULL, updated_at = now() "
                "WHERE organization_id = $1 AND delivery_id = $2 AND status <> 'pending' "
                f"RETURNING {_COLUMNS}",
                org,
                delivery,
            )
        if row is None:
            return await self.get(organization_id, delivery_id)
        return _record(row)
