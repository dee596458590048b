"""What the results service does: reads one organization's results, and follows new ones."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

from rased.common.errors import FieldViolation, NotFound, ValidationFailed
from rased.services.results.ports import (
    PendingStatus,
    PendingTransactions,
    ResultFilter,
    ResultPage,
    ResultQueries,
    ResultWakeups,
)
from rased.v1 import scoring_pb2

logger = logging.getLogger(__name__)

_NOT_FOUND = "transaction not found"


@dataclass(frozen=True)
class TransactionState:
    """A transaction's answer to GetResult: its latest result, or where it stands."""

    result: scoring_pb2.TransactionResult | None
    pending: PendingStatus | None


class Results:
    """GetResult, ListResults and WatchResults for the caller's organization."""

    def __init__(
        self,
        store: ResultQueries,
        pending: PendingTransactions,
        wakeups: ResultWakeups,
        poll_interval: timedelta = timedelta(seconds=5),
        batch_size: int = 100,
    ) -> None:
        self._store = store
        self._pending = pending
        self._wakeups = wakeups
        self._poll = poll_interval.total_seconds()
        self._batch = batch_size
        self._closing = False
        # The events the open streams wait on, so closing wakes every one of them.
        self._waiting: set[asyncio.Event] = set()

    async def get(self, organization_id: str, transaction_id: str) -> TransactionState:
        """Return the latest result, or the pending status.

        Raises:
            NotFound: neither a result nor a pending status exists in this organization
                (another organization's transaction is indistinguishable from a missing one).
        """
        result = await self._store.latest(organization_id, transaction_id)
        if result is not None:
            # A stored result wins over a pending status (e.g. of a later segment).
            return TransactionState(result, None)
        pending = await self._pending.status(organization_id, transaction_id)
        if pending is None:
            raise NotFound(_NOT_FOUND)
        return TransactionState(None, pending)

    async def page(
        self, organization_id: str, filters: ResultFilter, page_size: int, page_token: str
    ) -> ResultPage:
        """Return one page of results, newest first.

        Raises:
            ValidationFailed: the time range is empty, or the token is bad.
        """
        if filters.start and filters.end and filters.end <= filters.start:
            raise ValidationFailed(
                [FieldViolation("end_time", "must be after start_time", "time_range")]
            )
        return await self._store.page(organization_id, filters, page_size, page_token)

    async def watch(
        self, organization_id: str, after_cursor: int, from_beginning: bool
    ) -> AsyncIterator[scoring_pb2.TransactionResult]:
        """Yield the organization's results after a cursor, in order, then new ones as stored.

        With cursor 0 the stream starts at the results stored from now on, or at the first
        retained one with `from_beginning`. It ends when `close` is called; a caller that
        stops iterating (cancellation) ends it too.
        """
        async with self._wakeups.subscribe(organization_id) as wake:
            # Subscribed before the first read: a result stored meanwhile sets `wake`.
            cursor = after_cursor
            if cursor == 0 and not from_beginning:
                cursor = await self._store.last_cursor(organization_id)
            self._waiting.add(wake)
            try:
                while not self._closing:
                    wake.clear()
                    batch = await self._store.after(organization_id, cursor, self._batch)
                    for result in batch:
                        yield result
                        cursor = result.cursor
                    if len(batch) == self._batch:
                        continue  # more are waiting: read on without sleeping
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), self._poll)
            finally:
                self._waiting.discard(wake)

    def close(self) -> None:
        """End every open stream (server shutdown); safe to call twice."""
        self._closing = True
        for event in self._waiting:
            event.set()
