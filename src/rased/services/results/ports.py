"""The results service's ports: stored results, pending transactions and store wake-ups."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from rased.v1 import scoring_pb2

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


class PendingStatus(enum.StrEnum):
    """Where a transaction without a result stands, as stored in `transaction_status.status`."""

    BUFFERED = "buffered"  # batches wait in the ingestion buffer for a trigger
    SCORING = "scoring"  # compiled and handed to the scoring worker


@dataclass(frozen=True)
class ResultFilter:
    """Which of an organization's results a listing shows.

    Attributes:
        start: only results scored at or after this time (aware); None: no lower bound.
        end: only results scored before this time (aware); None: no upper bound.
        risk_levels: only these `rased.v1.RiskLevel` values; empty: all.
    """

    start: datetime | None = None
    end: datetime | None = None
    risk_levels: frozenset[scoring_pb2.RiskLevel.ValueType] = field(default_factory=frozenset)


@dataclass(frozen=True)
class ResultPage:
    """One page of results, newest first, and the token of the next page ("" on the last)."""

    results: Sequence[scoring_pb2.TransactionResult]
    next_page_token: str


class ResultQueries(Protocol):
    """Reads an organization's stored results. Every method sees one organization only."""

    async def latest(
        self, organization_id: str, transaction_id: str
    ) -> scoring_pb2.TransactionResult | None:
        """Return the result of the transaction's highest segment, or None if none is stored."""
        ...

    async def page(
        self, organization_id: str, filters: ResultFilter, page_size: int, page_token: str
    ) -> ResultPage:
        """Return one page, newest first (scored_at, then cursor).

        `page_size` 0 means DEFAULT_PAGE_SIZE; larger than MAX_PAGE_SIZE means MAX_PAGE_SIZE.

        Raises:
            ValidationFailed: the token is malformed or was made for other filters.
        """
        ...

    async def after(
        self, organization_id: str, cursor: int, limit: int
    ) -> list[scoring_pb2.TransactionResult]:
        """Return up to `limit` results with a cursor above `cursor`, in cursor order.

        Writers commit an organization's results in cursor order, so once a cursor has been
        returned, no result with a lower one appears later.
        """
        ...

    async def last_cursor(self, organization_id: str) -> int:
        """Return the organization's highest stored cursor, 0 if it has no result."""
        ...


class PendingTransactions(Protocol):
    """Knows the transactions that are buffered or being scored (written by the pipeline)."""

    async def status(self, organization_id: str, transaction_id: str) -> PendingStatus | None:
        """Return the pending status, or None when the transaction is unknown or too old."""
        ...

    async def mark(self, organization_id: str, transaction_id: str, status: PendingStatus) -> None:
        """Record (or overwrite) the transaction's pending status."""
        ...


class ResultWakeups(Protocol):
    """Tells watchers of an organization that new results may have been stored."""

    def subscribe(self, organization_id: str) -> AbstractAsyncContextManager[asyncio.Event]:
        """Yield an event set whenever the organization may have new results.

        The event is set at least once after each store (and after a lost connection, when
        notifications may have been missed); the watcher clears it before it reads.
        """
        ...
