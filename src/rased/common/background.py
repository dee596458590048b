"""A service's background loops (consumers, schedulers, runners) and their bounded stop.

Every worker runs loops next to its gRPC server. They share one life: started with the
service, asked to stop when shutdown begins, given the grace period to finish the work in
hand (a poll to commit, an attempt to record), then cancelled. Work cut off that way was
never committed or recorded, so it is taken up again after a restart: nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Protocol

logger = logging.getLogger(__name__)


class StoppableLoop(Protocol):
    """A loop that runs until asked to stop."""

    async def run(self) -> None:
        """Work until `request_stop`; return once the work in hand is done."""
        ...

    def request_stop(self) -> None:
        """Ask `run` to return after the work in hand."""
        ...


class BackgroundLoops:
    """Runs loops as tasks; `stop` asks each to stop and cancels what outlives the grace."""

    def __init__(
        self, grace: timedelta, on_failure: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """`on_failure` runs when a loop dies on its own (e.g. to report NOT_SERVING)."""
        self._grace = grace
        self._on_failure = on_failure
        self._loops: list[StoppableLoop] = []
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, name: str, loop: StoppableLoop) -> None:
        """Run `loop` in the background under `name` (its task's name in logs)."""
        self._loops.append(loop)
        self._tasks.append(asyncio.create_task(self._guarded(name, loop), name=name))

    async def _guarded(self, name: str, loop: StoppableLoop) -> None:
        try:
            await loop.run()
        except Exception:
            # A loop that died on its own does no more work: say so loudly.
            logger.exception("the %s loop failed", name)
            if self._on_failure is not None:
                await self._on_failure()
            raise

    async def stop(self) -> None:
        """Ask every loop to stop; wait up to the grace period, then cancel the rest."""
        for loop in self._loops:
            loop.request_stop()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=self._grace.total_seconds())
        for task in pending:
            logger.warning("%s did not finish in time; cancelled", task.get_name())
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for task in self._tasks:
            if task.done() and not task.cancelled():
                task.exception()  # a failure was logged by _guarded(); mark it seen
