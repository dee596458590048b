"""Subject erasure in Cassandra: the events and listing rows of a subject's transactions.

A session's transactions are found in `transactions_by_session`; each one's `events`
partition is deleted whole, with its `transactions_by_day` rows. Those rows are keyed by the
UTC days of the transaction's events (and, for a segment without events, the day it was
compiled), which only the events tell: so the event times are read first, every day they
touch is looked up, and the days of the listing's ingestion time (and the day before, for a
segment compiled just before midnight) too. The `transactions_by_session` row goes last, so
an erasure cut short finds the transaction again when it is retried. Deletes of rows that
are gone already are harmless (a tombstone), so erasing twice erases nothing more.

The session is opened on first use, not when the admin service starts: the admin API keeps
working while Cassandra is down, and erasure jobs fail and are retried until it is back.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.cluster import Session
from cassandra.query import PreparedStatement

from rased.adapters.cassandra.errors import cassandra_errors
from rased.adapters.cassandra.session import cassandra_session, execute, in_keyspace
from rased.services.persistence.rows import utc_day

_STATEMENTS = {
    "by_session": (
        "SELECT transaction_id, ingested_at FROM {keyspace}.transactions_by_session "
        "WHERE organization_id = ? AND session_id = ?"
    ),
    # Only the clustering column: the days of the events, and how many there are.
    "event_times": (
        "SELECT event_time_ms FROM {keyspace}.events "
        "WHERE organization_id = ? AND transaction_id = ?"
    ),
    "by_day": (
        "SELECT transaction_id FROM {keyspace}.transactions_by_day "
        "WHERE organization_id = ? AND day = ? AND transaction_id = ?"
    ),
    "delete_by_day": (
        "DELETE FROM {keyspace}.transactions_by_day WHERE organization_id = ? AND day = ? "
        "AND transaction_id = ?"
    ),
    "delete_events": (
        "DELETE FROM {keyspace}.events WHERE organization_id = ? AND transaction_id = ?"
    ),
    "delete_by_session": (
        "DELETE FROM {keyspace}.transactions_by_session "
        "WHERE organization_id = ? AND session_id = ? AND transaction_id = ?"
    ),
}


def listing_days(event_times_ms: Iterable[int], ingested: Iterable[datetime]) -> set[date]:
    """Return the days a transaction may be listed on in `transactions_by_day`."""
    days = {utc_day(moment) for moment in event_times_ms}
    for moment in ingested:
        day = moment.astimezone(UTC).date()
        days.update((day, day - timedelta(days=1)))
    return days


class CassandraSubjectData:
    """A subject's events and listing rows, in the keyspace the persistence worker writes."""

    def __init__(
        self,
        contact_points: Sequence[str],
        port: int,
        keyspace: str,
        request_timeout_s: float = 10.0,
    ) -> None:
        self._contact_points = list(contact_points)
        self._port = port
        self._keyspace = keyspace
        self._timeout = request_timeout_s
        self._resources = AsyncExitStack()
        self._session: Session | None = None
        self._statements: dict[str, PreparedStatement] = {}
        self._lock = asyncio.Lock()

    async def _connect(self) -> Session:
        async with self._lock:
            if self._session is None:
                # A connection whose statements failed to prepare is shut down at once,
                # not kept beside the next attempt's.
                attempt = AsyncExitStack()
                try:
                    with cassandra_errors():
                        session = await attempt.enter_async_context(
                            cassandra_session(
                                self._contact_points,
                                self._port,
                                self._keyspace,
                                request_timeout_s=self._timeout,
                                consistency=ConsistencyLevel.LOCAL_QUORUM,
                                max_reconnect_delay_s=5.0,
                            )
                        )
                        for name, query in _STATEMENTS.items():
                            statement = await asyncio.to_thread(
                                session.prepare, in_keyspace(session, query)
                            )
                            statement.is_idempotent = True
                            self._statements[name] = statement
                except BaseException:
                    await attempt.aclose()
                    raise
                self._resources.push_async_callback(attempt.aclose)
                self._session = session
            return self._session

    async def _run(self, name: str, *values: Any) -> list[Any]:
        session = await self._connect()
        with cassandra_errors():
            return await execute(session, self._statements[name].bind(values))

    async def transactions(self, organization_id: str, sessions: Collection[str]) -> set[str]:
        """Return the transactions listed for the sessions."""
        found: set[str] = set()
        for session_id in sessions:
            rows = await self._run("by_session", organization_id, session_id)
            found.update(row.transaction_id for row in rows)
        return found

    async def erase(
        self,
        organization_id: str,
        sessions: Collection[str],
        transactions: Collection[str],
        counts: Counter[str],
    ) -> None:
        """Delete the sessions' listed transactions and the given ones, listing rows last."""
        listed: dict[str, list[tuple[str, datetime]]] = {}
        for session_id in sessions:
            for row in await self._run("by_session", organization_id, session_id):
                listed.setdefault(row.transaction_id, []).append((session_id, row.ingested_at))
        for transaction_id in sorted(set(transactions) | set(listed)):
            entries = listed.get(transaction_id, [])
            times = [
                row.event_time_ms
                for row in await self._run("event_times", organization_id, transaction_id)
            ]
            # The driver returns timestamps as naive UTC datetimes.
            ingested = [moment.replace(tzinfo=UTC) for _, moment in entries if moment]
            for day in sorted(listing_days(times, ingested)):
                if await self._run("by_day", organization_id, day, transaction_id):
                    await self._run("delete_by_day", organization_id, day, transaction_id)
                    counts["cassandra_transactions_by_day"] += 1
            if times:
                await self._run("delete_events", organization_id, transaction_id)
                counts["cassandra_events"] += len(times)
            for session_id, _ in entries:
                await self._run("delete_by_session", organization_id, session_id, transaction_id)
                counts["cassandra_transactions_by_session"] += 1

    async def close(self) -> None:
        """Shut the driver down, if it was ever connected."""
        await self._resources.aclose()
        self._session = None
