"""Pending-status marks of concurrent batches written together, one statement per turn."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Protocol

from rased.common.errors import ValidationFailed
from rased.services.results.ports import PendingStatus

_Mark = tuple[str, str, PendingStatus, "asyncio.Future[None]"]


class StatusStore(Protocol):
    """Writes many marks in one statement (`PostgresPendingTransactions`)."""

    async def mark_many(self, keys: Sequence[tuple[str, str]], status: PendingStatus) -> None:
        """Record the status of each (organization, transaction) at once."""
        ...


class CoalescedStatusMarks:
    """Queues the marks asked for during one turn of the event loop and writes them at once.

    Ingestion marks a transaction twice (its first batch, its flush); one upsert and one
    commit per mark was a tenth of the path's CPU, PostgreSQL's included. Each caller still
    waits for its own mark to be committed and sees its own error. Marks keep their order:
    a transaction marked twice in one turn ends with the later status.
    """

    def __init__(self, store: StatusStore) -> None:
        """Write through `store`."""
        self._store = store
        self._queue: list[_Mark] = []
        self._scheduled = False
        self._writing: set[asyncio.Task[None]] = set()

    async def mark(self, organization_id: str, transaction_id: str, status: PendingStatus) -> None:
        """Record the transaction's status; return once it is committed.

        Raises:
            ValidationFailed: the organization id is not one.
            DependencyUnavailable: PostgreSQL is unreachable.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append((organization_id, transaction_id, status, done))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._dispatch)
        await done

    def _dispatch(self) -> None:
        self._scheduled = False
        queued, self._queue = self._queue, []
        task = asyncio.get_running_loop().create_task(self._write(queued))
        self._writing.add(task)
        task.add_done_callback(self._writing.discard)

    async def _write(self, queued: list[_Mark]) -> None:
        for status, group in itertools.groupby(queued, key=lambda mark: mark[2]):
            marks = list(group)
            try:
                await self._store.mark_many([(org, txn) for org, txn, _, _ in marks], status)
            except ValidationFailed as invalid:
                if len(marks) == 1:
                    _settle(marks, invalid)
                    continue
                # One bad id refuses the whole statement: the others go one by one.
                for mark in marks:
                    await self._write([mark])
            except Exception as exc:  # noqa: BLE001 - it goes to the callers waiting on it
                _settle(marks, exc)
            else:
                _settle(marks, None)


def _settle(marks: Sequence[_Mark], error: BaseException | None) -> None:
    for *_, done in marks:
        if done.done():  # the caller was cancelled
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)
