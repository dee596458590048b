"""Subject erasure in PostgreSQL: the erasure jobs, and the subject's results and deliveries.

Jobs are claimed like webhook deliveries: `FOR UPDATE SKIP LOCKED` picks a due job no other
runner holds, and the claim moves `next_attempt_at` past a lease, so a job whose runner died
is due again when the lease runs out. Only the claim's token may record the outcome.
"""

from __future__ import annotations

import enum
import json
import uuid
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg

from rased.adapters.postgres.keys import _parse_uuid, _postgres_errors


class SubjectKind(enum.Enum):
    """Whose data an erasure job erases."""

    SESSION = "session"
    USER = "user"


class ErasureStatus(enum.Enum):
    """Where an erasure job stands."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class ErasureJobRecord:
    """One erasure job as stored."""

    job_id: str
    organization_id: str
    subject_kind: SubjectKind
    subject_id: str
    status: ErasureStatus
    erased_counts: dict[str, int]
    error: str
    created_at: datetime
    finished_at: datetime | None
    sessions: tuple[str, ...] = ()
    attempts: int = 0
    claim_token: str = field(default="", compare=False)


_COLUMNS = (
    "job_id, organization_id, subject_kind, subject_id, status, erased_counts, error, "
    "created_at, finished_at, sessions, attempts, claim_token"
)

# Due jobs: new, failed and waiting for their retry, or running past their lease (the runner
# that claimed them is gone).
_CLAIM = f"""
UPDATE erasure_jobs SET status = 'running', attempts = attempts + 1, claim_token = $2,
    next_attempt_at = now() + $1::interval, updated_at = now()
WHERE job_id = (
    SELECT job_id FROM erasure_jobs
    WHERE status <> 'succeeded' AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING {_COLUMNS}
"""  # noqa: S608 - constant column list


def _record(row: asyncpg.Record) -> ErasureJobRecord:
    counts = json.loads(row["erased_counts"])
    return ErasureJobRecord(
        job_id=str(row["job_id"]),
        organization_id=str(row["organization_id"]),
        subject_kind=SubjectKind(row["subject_kind"]),
        subject_id=row["subject_id"],
        status=ErasureStatus(row["status"]),
        erased_counts={str(k): int(v) for k, v in counts.items()},
        error=row["error"],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        sessions=tuple(row["sessions"]),
        attempts=row["attempts"],
        claim_token=str(row["claim_token"] or ""),
    )


def _merge(previous: dict[str, int], counts: Counter[str]) -> str:
    merged = Counter(previous)
    merged.update(counts)
    return json.dumps(dict(sorted(merged.items())))


class ErasureJobStore:
    """The `erasure_jobs` table."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(
        self, organization_id: str, kind: SubjectKind, subject_id: str
    ) -> ErasureJobRecord:
        """Create a pending job, due now."""
        async with _postgres_errors():
            row = await self._pool.fetchrow(
                f"INSERT INTO erasure_jobs (job_id, organization_id, subject_kind, subject_id) "  # noqa: S608
                f"VALUES ($1, $2, $3, $4) RETURNING {_COLUMNS}",
                uuid.uuid4(),
                uuid.UUID(organization_id),
                kind.value,
                subject_id,
            )
        return _record(row)

    async def get(self, organization_id: str, job_id: str) -> ErasureJobRecord | None:
        """Return the organization's job, or None (another organization's job included)."""
        org, job = _parse_uuid(organization_id), _parse_uuid(job_id)
        if org is None or job is None:
            return None
        async with _postgres_errors():
            row = await self._pool.fetchrow(
                f"SELECT {_COLUMNS} FROM erasure_jobs "  # noqa: S608 - constant column list
                "WHERE organization_id = $1 AND job_id = $2",
                org,
                job,
            )
        return None if row is None else _record(row)

    async def claim(self, lease: timedelta) -> ErasureJobRecord | None:
        """Claim the job due first for one attempt under `lease`, or return None."""
        async with _postgres_errors():
            row = await self._pool.fetchrow(_CLAIM, lease, uuid.uuid4())
        return None if row is None else _record(row)

    async def remember_sessions(self, job: ErasureJobRecord, sessions: Collection[str]) -> bool:
        """Add sessions to the job's list before erasing them; False if the claim was lost."""
        async with _postgres_errors():
            status: str = await self._pool.execute(
                "UPDATE erasure_jobs SET sessions = ARRAY(SELECT DISTINCT s FROM "
                "unnest(sessions || $3::text[]) AS s ORDER BY s), updated_at = now() "
                "WHERE job_id = $1 AND claim_token = $2",
                uuid.UUID(job.job_id),
                uuid.UUID(job.claim_token),
                sorted(sessions),
            )
        return status != "UPDATE 0"

    async def succeed(self, job: ErasureJobRecord, counts: Counter[str]) -> bool:
        """Record success and the counts of this attempt; False if the claim was lost."""
        return await self._finish(job, counts, ErasureStatus.SUCCEEDED, "", None)

    async def fail(
        self, job: ErasureJobRecord, counts: Counter[str], error: str, retry_in: timedelta
    ) -> bool:
        """Record a failure (and what was erased before it); due again after `retry_in`."""
        return await self._finish(job, counts, ErasureStatus.FAILED, error, retry_in)

    async def _finish(
        self,
        job: ErasureJobRecord,
        counts: Counter[str],
        status: ErasureStatus,
        error: str,
        retry_in: timedelta | None,
    ) -> bool:
        done = status is ErasureStatus.SUCCEEDED
        async with _postgres_errors(), self._pool.acquire() as conn, conn.transaction():
            previous = await conn.fetchval(
                "SELECT erased_counts FROM erasure_jobs "
                "WHERE job_id = $1 AND claim_token = $2 FOR UPDATE",
                uuid.UUID(job.job_id),
                uuid.UUID(job.claim_token),
            )
            if previous is None:
                return False
            await conn.execute(
                "UPDATE erasure_jobs SET status = $2, erased_counts = $3::jsonb, error = $4, "
                "next_attempt_at = CASE WHEN $5 THEN NULL ELSE now() + $6::interval END, "
                "finished_at = CASE WHEN $5 THEN now() END, claim_token = NULL, "
                "updated_at = now() WHERE job_id = $1",
                uuid.UUID(job.job_id),
                status.value,
                _merge(json.loads(previous), counts),
                error,
                done,
                retry_in or timedelta(0),
            )
        return True


class PostgresSubjectData:
    """A subject's rows in PostgreSQL: results, pending statuses and webhook deliveries."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def sessions_of_user(self, organization_id: str, user_id: str) -> set[str]:
        """Return the sessions whose scored results carry the user id."""
        async with _postgres_errors():
            rows = await self._pool.fetch(
                "SELECT DISTINCT session_id FROM results "
                "WHERE organization_id = $1 AND user_id = $2",
                uuid.UUID(organization_id),
                user_id,
            )
        return {row["session_id"] for row in rows}

    async def transactions(self, organization_id: str, sessions: Collection[str]) -> set[str]:
        """Return the transactions of the sessions known to results and deliveries."""
        async with _postgres_errors():
            rows = await self._pool.fetch(
                "SELECT transaction_id FROM results "
                "WHERE organization_id = $1 AND session_id = ANY($2::text[]) "
                "UNION SELECT transaction_id FROM webhook_deliveries "
                "WHERE organization_id = $1 AND session_id = ANY($2::text[])",
                uuid.UUID(organization_id),
                list(sessions),
            )
        return {row["transaction_id"] for row in rows}

    async def erase(
        self,
        organization_id: str,
        sessions: Collection[str],
        transactions: Collection[str],
        counts: Counter[str],
    ) -> None:
        """Delete the sessions' results and deliveries and the transactions' statuses, at once."""
        org, names, txns = uuid.UUID(organization_id), list(sessions), list(transactions)
        async with _postgres_errors(), self._pool.acquire() as conn, conn.transaction():
            attempts = await conn.fetchval(
                "SELECT count(*) FROM webhook_delivery_attempts a JOIN webhook_deliveries d "
                "USING (delivery_id) WHERE d.organization_id = $1 "
                "AND (d.session_id = ANY($2::text[]) OR d.transaction_id = ANY($3::text[]))",
                org,
                names,
                txns,
            )
            # Attempts go with their delivery (ON DELETE CASCADE).
            deliveries = await conn.fetch(
                "DELETE FROM webhook_deliveries WHERE organization_id = $1 "
                "AND (session_id = ANY($2::text[]) OR transaction_id = ANY($3::text[])) "
                "RETURNING 1",
                org,
                names,
                txns,
            )
            results = await conn.fetch(
                "DELETE FROM results WHERE organization_id = $1 "
                "AND (session_id = ANY($2::text[]) OR transaction_id = ANY($3::text[])) "
                "RETURNING 1",
                org,
                names,
                txns,
            )
            statuses = await conn.fetch(
                "DELETE FROM transaction_status WHERE organization_id = $1 "
                "AND transaction_id = ANY($2::text[]) RETURNING 1",
                org,
                txns,
            )
        counts["postgres_webhook_delivery_attempts"] += int(attempts)
        counts["postgres_webhook_deliveries"] += len(deliveries)
        counts["postgres_results"] += len(results)
        counts["postgres_transaction_status"] += len(statuses)
