"""Pending-status marks coalesced into shared statements, against the real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest

from rased.adapters.postgres.keys import OrganizationStore
from rased.adapters.postgres.results import PostgresPendingTransactions
from rased.adapters.postgres.status_marks import CoalescedStatusMarks
from rased.common.errors import DependencyUnavailable, ValidationFailed
from rased.services.results.ports import PendingStatus


class _CountingStore:
    """The real store, counting the statements it is asked for."""

    def __init__(self, store: PostgresPendingTransactions) -> None:
        self.store = store
        self.statements: list[int] = []

    async def mark_many(self, keys: Sequence[tuple[str, str]], status: PendingStatus) -> None:
        self.statements.append(len(keys))
        await self.store.mark_many(keys, status)


@pytest.fixture
async def pool(module_database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(module_database, min_size=1, max_size=4)
    yield pool
    await pool.close()


async def test_concurrent_marks_share_one_statement_and_are_all_stored(
    pool: asyncpg.Pool,
) -> None:
    org = await OrganizationStore(pool).create("marks")
    store = PostgresPendingTransactions(pool)
    counting = _CountingStore(store)
    marks = CoalescedStatusMarks(counting)
    await asyncio.gather(*(marks.mark(org, f"txn-{n}", PendingStatus.BUFFERED) for n in range(40)))
    assert counting.statements == [40]
    statuses = [await store.status(org, f"txn-{n}") for n in range(40)]
    assert statuses == [PendingStatus.BUFFERED] * 40


async def test_the_later_mark_of_a_transaction_wins(pool: asyncpg.Pool) -> None:
    org = await OrganizationStore(pool).create("marks-order")
    store = PostgresPendingTransactions(pool)
    marks = CoalescedStatusMarks(store)
    await asyncio.gather(
        marks.mark(org, "txn-a", PendingStatus.BUFFERED),
        marks.mark(org, "txn-a", PendingStatus.SCORING),
        marks.mark(org, "txn-b", PendingStatus.SCORING),
        marks.mark(org, "txn-b", PendingStatus.BUFFERED),
    )
    assert await store.status(org, "txn-a") == PendingStatus.SCORING
    assert await store.status(org, "txn-b") == PendingStatus.BUFFERED


async def test_a_bad_organization_id_fails_only_its_own_caller(pool: asyncpg.Pool) -> None:
    org = await OrganizationStore(pool).create("marks-bad")
    store = PostgresPendingTransactions(pool)
    marks = CoalescedStatusMarks(store)
    outcomes = await asyncio.gather(
        marks.mark(org, "txn-good", PendingStatus.BUFFERED),
        marks.mark("not-an-org", "txn-bad", PendingStatus.BUFFERED),
        return_exceptions=True,
    )
    assert outcomes[0] is None
    assert isinstance(outcomes[1], ValidationFailed)
    assert await store.status(org, "txn-good") == PendingStatus.BUFFERED


async def test_postgres_down_is_a_dependency_error(pool: asyncpg.Pool) -> None:
    org = await OrganizationStore(pool).create("marks-down")
    # Nothing listens on port 1: every connection attempt is refused.
    unreachable = await asyncpg.create_pool(
        "postgresql://rased@127.0.0.1:1/rased", min_size=0, max_size=1, timeout=2
    )
    marks = CoalescedStatusMarks(PostgresPendingTransactions(unreachable))
    try:
        with pytest.raises(DependencyUnavailable):
            await marks.mark(org, "txn-1", PendingStatus.BUFFERED)
    finally:
        await unreachable.close()
