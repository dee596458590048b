"""Events and transaction listings in Cassandra: prepared, concurrent, idempotent writes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cassandra.cluster import Session
from cassandra.query import PreparedStatement

from rased.adapters.cassandra.errors import cassandra_errors
from rased.adapters.cassandra.session import execute, in_keyspace
from rased.services.persistence.ports import SealedEvent
from rased.services.persistence.rows import TransactionRow

_INSERT_EVENT = (
    "INSERT INTO {keyspace}.events (organization_id, transaction_id, event_time_ms, sequence, "
    "session_id, event_type, key_id, payload, ingested_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
)
_INSERT_BY_DAY = (
    "INSERT INTO {keyspace}.transactions_by_day (organization_id, day, transaction_id, session_id, "
    "ingested_at) VALUES (?, ?, ?, ?, ?) USING TTL ?"
)
_INSERT_BY_SESSION = (
    "INSERT INTO {keyspace}.transactions_by_session (organization_id, session_id, transaction_id, "
    "ingested_at) VALUES (?, ?, ?, ?) USING TTL ?"
)


class CassandraEventStore:
    """Writes events one row per statement, many in flight at once, never more than a bound.

    Rows of different partitions go as separate statements on purpose: the token-aware
    policy sends each straight to a replica of its partition, where a multi-partition
    batch would make one coordinator fan out (and log the batch) for nothing. Every row is
    an upsert by its full primary key, so writing a message twice leaves one set of rows.
    """

    def __init__(self, session: Session, statements: dict[str, PreparedStatement], limit: int):
        self._session = session
        self._statements = statements
        # One semaphore per store: every message written concurrently shares the bound.
        self._in_flight = asyncio.Semaphore(limit)

    @classmethod
    async def prepare(cls, session: Session, max_in_flight: int = 128) -> CassandraEventStore:
        """Prepare the statements (in the session's keyspace) and return the store."""
        with cassandra_errors():
            statements = {
                name: await asyncio.to_thread(session.prepare, in_keyspace(session, query))
                for name, query in (
                    ("event", _INSERT_EVENT),
                    ("by_day", _INSERT_BY_DAY),
                    ("by_session", _INSERT_BY_SESSION),
                )
            }
        # Upserts by full key: a retry after a timeout cannot duplicate anything.
        for statement in statements.values():
            statement.is_idempotent = True
        return cls(session, statements, max_in_flight)

    async def write(
        self,
        events: Sequence[SealedEvent],
        transaction: TransactionRow,
        ttl_seconds: int,
        ingested_at: datetime,
    ) -> None:
        """Write the events and listing rows; raise DependencyUnavailable if any write failed."""
        writes: list[tuple[PreparedStatement, tuple[Any, ...]]] = [
            (
                self._statements["event"],
                (
                    e.organization_id,
                    e.transaction_id,
                    e.event_time_ms,
                    e.sequence,
                    e.session_id,
                    e.event_type,
                    e.key_id,
                    e.payload,
                    ingested_at,
                    ttl_seconds,
                ),
            )
            for e in events
        ]
        org, txn, session = (
            transaction.organization_id,
            transaction.transaction_id,
            transaction.session_id,
        )
        writes += [
            (self._statements["by_day"], (org, day, txn, session, ingested_at, ttl_seconds))
            for day in transaction.days
        ]
        writes.append(
            (self._statements["by_session"], (org, session, txn, ingested_at, ttl_seconds))
        )
        results = await asyncio.gather(
            *(self._write_one(statement, values) for statement, values in writes),
            return_exceptions=True,
        )
        # Every write has settled (none is left running behind a failure); report the first.
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _write_one(self, statement: PreparedStatement, values: tuple[Any, ...]) -> None:
        async with self._in_flight:
            with cassandra_errors():
                await execute(self._session, statement.bind(values))
