"""The admin API's audit log in PostgreSQL: decisions, never secrets."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from rased.adapters.postgres.keys import _parse_uuid, _postgres_errors


class AuditOutcome(enum.StrEnum):
    """Whether an audited call was allowed, as stored in `audit_log.outcome`."""

    ALLOWED = "allowed"
    DENIED = "denied"


@dataclass(frozen=True)
class AuditEntry:
    """One audited decision, as stored."""

    event_id: str
    seq: int
    organization_id: str | None
    actor: str
    action: str
    target: str
    outcome: AuditOutcome
    reason: str
    created_at: datetime


class AuditLog:
    """Appends decisions and pages through an organization's log, newest first."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(
        self,
        *,
        organization_id: str | None,
        actor: str,
        action: str,
        target: str,
        outcome: AuditOutcome,
        reason: str = "",
    ) -> str:
        """Append one decision and return its event id."""
        event_id = uuid.uuid4()
        async with _postgres_errors():
            await self._pool.execute(
                "INSERT INTO audit_log (event_id, organization_id, actor, action, target, "
                "outcome, reason) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                event_id,
                _parse_uuid(organization_id) if organization_id else None,
                actor,
                action,
                target,
                outcome.value,
                reason,
            )
        return str(event_id)

    async def list_for_organization(
        self, organization_id: str, limit: int, before_seq: int | None = None
    ) -> list[AuditEntry]:
        """Return up to `limit` entries of an organization, newest first, older than a seq."""
        org = _parse_uuid(organization_id)
        if org is None:
            return []
        async with _postgres_errors():
            rows = await self._pool.fetch(
                "SELECT seq, event_id, organization_id, actor, action, target, outcome, reason, "
                "created_at FROM audit_log WHERE organization_id = $1 "
                "AND ($2::bigint IS NULL OR seq < $2) ORDER BY seq DESC LIMIT $3",
                org,
                before_seq,
                limit,
            )
        return [
            AuditEntry(
                event_id=str(row["event_id"]),
                seq=row["seq"],
                organization_id=str(row["organization_id"]),
                actor=row["actor"],
                action=row["action"],
                target=row["target"],
                outcome=AuditOutcome(row["outcome"]),
                reason=row["reason"],
                created_at=row["created_at"],
            )
            for row in rows
        ]
