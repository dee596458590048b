"""Scored results, pending transactions and result notifications in PostgreSQL (asyncpg).

Cursors are per organization (1, 2, 3...), handed out by `result_cursors` in the transaction
that inserts the result. Its row lock, held until commit, makes one organization's results
commit in cursor order: a watcher that has read cursor N never sees a lower cursor appear
later. (With a global sequence, a slow transaction could commit cursor 10 after cursor 11
was read, and the sequence's gaps would tell a tenant how busy the others are.)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from rased.common.errors import DependencyUnavailable, FieldViolation, ValidationFailed
from rased.services.results.ports import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    PendingStatus,
    ResultFilter,
    ResultPage,
)
from rased.v1 import scoring_pb2

logger = logging.getLogger(__name__)

# NOTIFY channel of stored results; the payload is the organization id.
RESULTS_CHANNEL = "rased_results"
# application_name of the LISTEN connection, to find it in pg_stat_activity.
LISTENER_APPLICATION_NAME = "rased-results-listener"

_RISK_PREFIX = "RISK_LEVEL_"
_RECOMMENDATION_PREFIX = "RECOMMENDATION_"

_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
)

_COLUMNS = (
    "organization_id, transaction_id, segment, cursor, session_id, user_id, bot_detection, "
    "keystroke_dynamics, location_anomaly, device_fingerprint, behavioral_anomaly, "
    "overall_confidence, risk_level, recommendations, reason_codes, model_version, "
    "processing_time_ms, degraded, scored_at"
)

_INSERT = """
INSERT INTO results (
    organization_id, transaction_id, segment, session_id, user_id, bot_detection,
    keystroke_dynamics, location_anomaly, device_fingerprint, behavioral_anomaly,
    overall_confidence, risk_level, recommendations, reason_codes, model_version,
    processing_time_ms, degraded, scored_at, cursor
) VALUES (
    $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::jsonb, $15, $16, $17,
    COALESCE($18, now()), $19
)
ON CONFLICT (organization_id, transaction_id, segment) DO NOTHING
RETURNING cursor
"""

# The same insert, answering the stored row (a batch save reads nothing back).
_INSERT_RETURNING_ROW = _INSERT.replace("RETURNING cursor", f"RETURNING {_COLUMNS}")

# Locks the organization's counter row until commit (the first result creates it).
_NEXT_CURSOR = """
INSERT INTO result_cursors (organization_id, last_cursor) VALUES ($1, 1)
ON CONFLICT (organization_id) DO UPDATE SET last_cursor = result_cursors.last_cursor + 1
RETURNING last_cursor
"""


@asynccontextmanager
async def _postgres_errors() -> AsyncIterator[None]:
    """Turn connection failures into DependencyUnavailable (UNAVAILABLE, retryable)."""
    try:
        yield
    except _UNAVAILABLE as exc:
        raise DependencyUnavailable(f"PostgreSQL unavailable: {type(exc).__name__}") from exc


def _org_uuid(organization_id: str) -> uuid.UUID | None:
    """Return the organization's UUID, or None for text that is not one (no such org)."""
    try:
        return uuid.UUID(organization_id)
    except (ValueError, TypeError, AttributeError):
        return None


def _result_from_row(row: asyncpg.Record) -> scoring_pb2.TransactionResult:
    """Build the contract's message from a `results` row."""
    result = scoring_pb2.TransactionResult(
        organization_id=str(row["organization_id"]),
        session_id=row["session_id"],
        transaction_id=row["transaction_id"],
        segment=row["segment"],
        scores=scoring_pb2.Scores(
            bot_detection=row["bot_detection"],
            keystroke_dynamics=row["keystroke_dynamics"],
            location_anomaly=row["location_anomaly"],
            device_fingerprint=row["device_fingerprint"],
            behavioral_anomaly=row["behavioral_anomaly"],
            overall_confidence=row["overall_confidence"],
        ),
        risk_level=scoring_pb2.RiskLevel.Value(_RISK_PREFIX + row["risk_level"]),
        recommendations=[
            scoring_pb2.Recommendation.Value(_RECOMMENDATION_PREFIX + name)
            for name in row["recommendations"]
        ],
        reason_codes=[
            scoring_pb2.ReasonCode(
                code=reason.get("code", ""),
                description=reason.get("description", ""),
                score=reason.get("score", ""),
                weight=reason.get("weight", 0.0),
            )
            for reason in json.loads(row["reason_codes"])
        ],
        model_version=row["model_version"],
        processing_time_ms=row["processing_time_ms"],
        degraded=row["degraded"],
        cursor=row["cursor"],
        user_id=row["user_id"],
    )
    result.scored_at.FromDatetime(row["scored_at"])
    return result


def _insert_arguments(result: scoring_pb2.TransactionResult, org: uuid.UUID) -> list[Any]:
    """Return the INSERT's arguments for a result (its cursor is assigned by the table)."""
    if result.risk_level == scoring_pb2.RISK_LEVEL_UNSPECIFIED:
        raise ValidationFailed(
            [FieldViolation("risk_level", "a stored result has a risk level", "required")]
        )
    scores = result.scores
    reasons = [
        {"code": r.code, "description": r.description, "score": r.score, "weight": r.weight}
        for r in result.reason_codes
    ]
    return [
        org,
        result.transaction_id,
        result.segment,
        result.session_id,
        result.user_id,
        scores.bot_detection,
        scores.keystroke_dynamics,
        scores.location_anomaly,
        scores.device_fingerprint,
        scores.behavioral_anomaly,
        scores.overall_confidence,
        scoring_pb2.RiskLevel.Name(result.risk_level).removeprefix(_RISK_PREFIX),
        [
            scoring_pb2.Recommendation.Name(r).removeprefix(_RECOMMENDATION_PREFIX)
            for r in result.recommendations
        ],
        json.dumps(reasons),
        result.model_version,
        result.processing_time_ms,
        result.degraded,
        result.scored_at.ToDatetime(tzinfo=UTC) if result.HasField("scored_at") else None,
    ]


def _filter_fingerprint(filters: ResultFilter) -> str:
    """Return a short digest of the filters, so a token is refused with other filters."""
    text = json.dumps(
        [
            filters.start.isoformat() if filters.start else None,
            filters.end.isoformat() if filters.end else None,
            sorted(filters.risk_levels),
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _encode_token(scored_at: datetime, cursor: int, fingerprint: str) -> str:
    """Return the opaque token of the position after (scored_at, cursor)."""
    micros = (scored_at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    payload = json.dumps({"t": micros, "c": cursor, "f": fingerprint}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _decode_token(token: str, fingerprint: str) -> tuple[datetime, int]:
    """Return the position a token names; raise ValidationFailed for a bad or foreign one."""
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        micros, cursor, made_for = int(payload["t"]), int(payload["c"]), str(payload["f"])
        scored_at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise _bad_token("malformed page token") from exc
    if made_for != fingerprint:
        raise _bad_token("the page token was made for other filters")
    return scored_at, cursor


class _Redelivered(Exception):
    """Rolls back a save whose row exists already."""


def _bad_token(description: str) -> ValidationFailed:
    return ValidationFailed([FieldViolation("page_token", description, "page_token")])


class PostgresResultStore:
    """The `results` table: idempotent saves (scoring worker) and the results service's reads."""

    def __init__(self, pool: asyncpg.Pool, channel: str = RESULTS_CHANNEL) -> None:
        self._pool = pool
        self._channel = channel

    async def save(self, result: scoring_pb2.TransactionResult) -> bool:
        """Store a result unless its (organization, transaction, segment) is stored already.

        Returns True when this call stored it (and notified watchers), False for a
        redelivery, which changes nothing. The given cursor is ignored: the table assigns
        the next one; `scored_at` is kept when set, else the time of storing.
        """
        org = _org_uuid(result.organization_id)
        if org is None:
            raise ValidationFailed(
                [FieldViolation("organization_id", "not an organization id", "uuid")]
            )
        arguments = _insert_arguments(result, org)
        try:
            async with _postgres_errors(), self._pool.acquire() as conn, conn.transaction():
                cursor = await conn.fetchval(_NEXT_CURSOR, org)
                if await conn.fetchval(_INSERT, *arguments, cursor) is None:
                    raise _Redelivered
                # Delivered at commit, only if the row is committed.
                await conn.execute("SELECT pg_notify($1, $2)", self._channel, str(org))
        except _Redelivered:
            # Rolled back, which returned the cursor: an organization's cursors keep no gaps.
            return False
        return True

    async def save_many(
        self, results: Sequence[scoring_pb2.TransactionResult]
    ) -> list[scoring_pb2.TransactionResult | None]:
        """Store each result unless stored already; return the stored rows, None for those
        that were stored before (redeliveries, which change nothing).

        One database transaction per organization: its cursor row is locked once and the
        results take consecutive cursors in the given order, so one commit (instead of one
        per result) keeps the cursors gap-free and in commit order.
        """
        arguments: list[list[Any]] = []
        by_org: dict[uuid.UUID, list[int]] = {}
        for index, result in enumerate(results):
            org = _org_uuid(result.organization_id)
            if org is None:
                raise ValidationFailed(
                    [FieldViolation("organization_id", "not an organization id", "uuid")]
                )
            arguments.append(_insert_arguments(result, org))
            by_org.setdefault(org, []).append(index)
        stored: list[scoring_pb2.TransactionResult | None] = [None] * len(results)

        async def save_organization(org: uuid.UUID, indexes: list[int]) -> None:
            try:
                async with _postgres_errors(), self._pool.acquire() as conn, conn.transaction():
                    first = await conn.fetchval(_NEXT_CURSOR, org)
                    inserted = 0
                    for index in indexes:
                        row = await conn.fetchrow(
                            _INSERT_RETURNING_ROW, *arguments[index], first + inserted
                        )
                        if row is not None:
                            stored[index] = _result_from_row(row)
                            inserted += 1
                    if not inserted:
                        raise _Redelivered
                    await conn.execute(
                        "UPDATE result_cursors SET last_cursor = $2 WHERE organization_id = $1",
                        org,
                        first + inserted - 1,
                    )
                    await conn.execute("SELECT pg_notify($1, $2)", self._channel, str(org))
            except _Redelivered:
                # Rolled back, which returned the cursor taken: still no gaps.
                return

        await asyncio.gather(*(save_organization(o, i) for o, i in by_org.items()))
        return stored

    async def get_many(
        self, keys: Sequence[tuple[str, str, int]]
    ) -> list[scoring_pb2.TransactionResult | None]:
        """Return the stored result of each (organization, transaction, segment), in one query."""
        parsed = [(_org_uuid(org), txn, segment) for org, txn, segment in keys]
        wanted = [(org, txn, segment) for org, txn, segment in parsed if org is not None]
        if not wanted:
            return [None] * len(keys)
        async with _postgres_errors():
            rows = await self._pool.fetch(
                f"SELECT {_COLUMNS} FROM results JOIN unnest($1::uuid[], $2::text[], "  # noqa: S608
                "$3::integer[]) AS k(o, t, s) ON organization_id = k.o "
                "AND transaction_id = k.t AND segment = k.s",
                [org for org, _, _ in wanted],
                [txn for _, txn, _ in wanted],
                [segment for _, _, segment in wanted],
            )
        found = {
            (row["organization_id"], row["transaction_id"], row["segment"]): _result_from_row(row)
            for row in rows
        }
        return [found.get((org, txn, segment)) for org, txn, segment in parsed]

    async def get(
        self, organization_id: str, transaction_id: str, segment: int
    ) -> scoring_pb2.TransactionResult | None:
        """Return one segment's stored result (e.g. to re-announce a redelivered one)."""
        org = _org_uuid(organization_id)
        if org is None:
            return None
        async with _postgres_errors():
            row = await self._pool.fetchrow(
                f"SELECT {_COLUMNS} FROM results "  # noqa: S608 - constant column list
                "WHERE organization_id = $1 AND transaction_id = $2 AND segment = $3",
                org,
                transaction_id,
                segment,
            )
        return None if row is None else _result_from_row(row)

    async def latest(
        self, organization_id: str, transaction_id: str
    ) -> scoring_pb2.TransactionResult | None:
        """Return the result of the transaction's highest segment, or None."""
        org = _org_uuid(organization_id)
        if org is None:
            return None
        async with _postgres_errors():
            row = await self._pool.fetchrow(
                f"SELECT {_COLUMNS} FROM results "  # noqa: S608 - constant column list
                "WHERE organization_id = $1 AND transaction_id = $2 "
                "ORDER BY segment DESC LIMIT 1",
                org,
                transaction_id,
            )
        return None if row is None else _result_from_row(row)

    async def page(
        self, organization_id: str, filters: ResultFilter, page_size: int, page_token: str
    ) -> ResultPage:
        """Return one page of results, newest first, continuing after `page_token`."""
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        fingerprint = _filter_fingerprint(filters)
        position = _decode_token(page_token, fingerprint) if page_token else None
        org = _org_uuid(organization_id)
        if org is None:
            return ResultPage([], "")
        # Conditions are added only when used, so each shape gets a plan that uses the index.
        conditions = ["organization_id = $1"]
        arguments: list[Any] = [org]

        def bind(value: Any) -> str:
            arguments.append(value)
            return f"${len(arguments)}"

        if filters.start is not None:
            conditions.append(f"scored_at >= {bind(filters.start)}")
        if filters.end is not None:
            conditions.append(f"scored_at < {bind(filters.end)}")
        if filters.risk_levels:
            names = sorted(
                scoring_pb2.RiskLevel.Name(level).removeprefix(_RISK_PREFIX)
                for level in filters.risk_levels
            )
            conditions.append(f"risk_level = ANY({bind(names)}::text[])")
        if position is not None:
            conditions.append(f"(scored_at, cursor) < ({bind(position[0])}, {bind(position[1])})")
        # One row more than the page tells whether another page follows.
        query = (
            f"SELECT {_COLUMNS} FROM results WHERE {' AND '.join(conditions)} "  # noqa: S608
            f"ORDER BY scored_at DESC, cursor DESC LIMIT {bind(size + 1)}"
        )
        async with _postgres_errors():
            rows = await self._pool.fetch(query, *arguments)
        more = len(rows) > size
        rows = rows[:size]
        token = (
            _encode_token(rows[-1]["scored_at"], rows[-1]["cursor"], fingerprint) if more else ""
        )
        return ResultPage([_result_from_row(row) for row in rows], token)

    async def after(
        self, organization_id: str, cursor: int, limit: int
    ) -> list[scoring_pb2.TransactionResult]:
        """Return up to `limit` results with a cursor above `cursor`, in cursor order."""
        org = _org_uuid(organization_id)
        if org is None:
            return []
        async with _postgres_errors():
            rows = await self._pool.fetch(
                f"SELECT {_COLUMNS} FROM results "  # noqa: S608 - constant column list
                "WHERE organization_id = $1 AND cursor > $2 ORDER BY cursor LIMIT $3",
                org,
                cursor,
                limit,
            )
        return [_result_from_row(row) for row in rows]

    async def last_cursor(self, organization_id: str) -> int:
        """Return the organization's highest cursor, 0 when it has no result."""
        org = _org_uuid(organization_id)
        if org is None:
            return 0
        async with _postgres_errors():
            value = await self._pool.fetchval(
                "SELECT max(cursor) FROM results WHERE organization_id = $1", org
            )
        return int(value or 0)


class PostgresPendingTransactions:
    """The `transaction_status` table: transactions buffered or being scored."""

    def __init__(self, pool: asyncpg.Pool, max_age: timedelta = timedelta(hours=1)) -> None:
        """Rows older than `max_age` are ignored (a transaction that was never scored)."""
        self._pool = pool
        self._max_age = max_age

    async def status(self, organization_id: str, transaction_id: str) -> PendingStatus | None:
        """Return the pending status, or None when unknown or older than the maximum age."""
        org = _org_uuid(organization_id)
        if org is None:
            return None
        async with _postgres_errors():
            value = await self._pool.fetchval(
                "SELECT status FROM transaction_status "
                "WHERE organization_id = $1 AND transaction_id = $2 "
                "AND updated_at > now() - $3::interval",
                org,
                transaction_id,
                self._max_age,
            )
        return None if value is None else PendingStatus(value)

    async def mark(self, organization_id: str, transaction_id: str, status: PendingStatus) -> None:
        """Record or overwrite the transaction's pending status."""
        org = _org_uuid(organization_id)
        if org is None:
            raise ValidationFailed(
                [FieldViolation("organization_id", "not an organization id", "uuid")]
            )
        async with _postgres_errors():
            await self._pool.execute(
                "INSERT INTO transaction_status (organization_id, transaction_id, status) "
                "VALUES ($1, $2, $3) ON CONFLICT (organization_id, transaction_id) "
                "DO UPDATE SET status = excluded.status, updated_at = now()",
                org,
                transaction_id,
                status.value,
            )

    async def mark_many(self, keys: Sequence[tuple[str, str]], status: PendingStatus) -> None:
        """Record or overwrite the pending status of each (organization, transaction), at once."""
        unique: dict[tuple[uuid.UUID, str], None] = {}
        for organization_id, transaction_id in keys:
            org = _org_uuid(organization_id)
            if org is None:
                raise ValidationFailed(
                    [FieldViolation("organization_id", "not an organization id", "uuid")]
                )
            # One statement may not update a row twice: duplicates go first.
            unique[(org, transaction_id)] = None
        if not unique:
            return
        async with _postgres_errors():
            await self._pool.execute(
                "INSERT INTO transaction_status (organization_id, transaction_id, status) "
                "SELECT o, t, $3 FROM unnest($1::uuid[], $2::text[]) AS k(o, t) "
                "ON CONFLICT (organization_id, transaction_id) "
                "DO UPDATE SET status = excluded.status, updated_at = now()",
                [org for org, _ in unique],
                [txn for _, txn in unique],
                status.value,
            )

    async def forget(self, organization_id: str, transaction_id: str) -> None:
        """Delete the transaction's pending status (e.g. once its result is stored)."""
        org = _org_uuid(organization_id)
        if org is None:
            return
        async with _postgres_errors():
            await self._pool.execute(
                "DELETE FROM transaction_status WHERE organization_id = $1 AND transaction_id = $2",
                org,
                transaction_id,
            )

    async def purge(self) -> int:
        """Delete rows older than the maximum age; return how many."""
        async with _postgres_errors():
            status = await self._pool.execute(
                "DELETE FROM transaction_status WHERE updated_at <= now() - $1::interval",
                self._max_age,
            )
        return int(status.split()[-1])


class PostgresResultNotifications:
    """Wakes an organization's watchers on `NOTIFY`, over one dedicated LISTEN connection.

    The connection is checked every `check_interval` and reopened after a failure; every
    watcher is woken after a (re)connection, since notifications sent meanwhile are lost.
    Watchers should still poll now and then: notifications are a latency optimisation.
    """

    def __init__(
        self,
        dsn: str,
        channel: str = RESULTS_CHANNEL,
        check_interval: timedelta = timedelta(seconds=5),
        reconnect_delay: timedelta = timedelta(seconds=1),
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._check = check_interval.total_seconds()
        self._reconnect = reconnect_delay.total_seconds()
        self._subscribers: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    async def start(self, connect_timeout: timedelta = timedelta(seconds=10)) -> None:
        """Start listening; wait up to `connect_timeout` for the first connection."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="result-notifications")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), connect_timeout.total_seconds())
        if not self._listening.is_set():
            logger.warning("not listening for results yet; watchers poll until it works")

    async def close(self) -> None:
        """Stop listening and close the connection; safe to call twice."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._wake(self._all_events())

    @asynccontextmanager
    async def subscribe(self, organization_id: str) -> AsyncIterator[asyncio.Event]:
        """Yield an event set whenever the organization may have new results."""
        event = asyncio.Event()
        self._subscribers.setdefault(organization_id, set()).add(event)
        try:
            yield event
        finally:
            events = self._subscribers.get(organization_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._subscribers[organization_id]

    def _all_events(self) -> list[asyncio.Event]:
        return [event for events in self._subscribers.values() for event in events]

    @staticmethod
    def _wake(events: Iterable[asyncio.Event]) -> None:
        for event in events:
            event.set()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        # Another org's result wakes nobody here: watchers are indexed by their own org.
        self._wake(self._subscribers.get(payload, ()))

    async def _run(self) -> None:
        while True:
            try:
                conn = await asyncpg.connect(
                    self._dsn,
                    timeout=10,
                    server_settings={"application_name": LISTENER_APPLICATION_NAME},
                )
                try:
                    await conn.add_listener(self._channel, self._on_notify)
                    self._listening.set()
                    # Results stored while no connection listened were not announced.
                    self._wake(self._all_events())
                    while True:
                        await asyncio.sleep(self._check)
                        await conn.fetchval("SELECT 1", timeout=self._check)
                finally:
                    self._listening.clear()
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect after a pause
                logger.warning("result notifications lost (%s); reconnecting", exc)
                self._wake(self._all_events())
                await asyncio.sleep(self._reconnect)
