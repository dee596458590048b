"""Background loops stop with the service: asked first, cancelled after the grace period."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from rased.common.background import BackgroundLoops


class PoliteLoop:
    """Finishes the unit of work in hand, then returns when asked."""

    def __init__(self) -> None:
        self.stop_requested = asyncio.Event()
        self.finished_work = False

    async def run(self) -> None:
        await self.stop_requested.wait()
        await asyncio.sleep(0.01)  # the work in hand
        self.finished_work = True

    def request_stop(self) -> None:
        self.stop_requested.set()


class StuckLoop:
    """Ignores stop requests (a call hanging on a dependency)."""

    def __init__(self) -> None:
        self.cancelled = False

    async def run(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise

    def request_stop(self) -> None:
        pass


class BrokenLoop:
    """Dies on its own."""

    async def run(self) -> None:
        raise RuntimeError("bug")

    def request_stop(self) -> None:
        pass


async def test_stop_lets_loops_finish_and_cancels_those_past_the_grace() -> None:
    polite, stuck = PoliteLoop(), StuckLoop()
    loops = BackgroundLoops(timedelta(milliseconds=200))
    loops.start("polite", polite)
    loops.start("stuck", stuck)
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await loops.stop()
    assert polite.finished_work
    assert stuck.cancelled


async def test_a_loop_that_dies_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    reported = asyncio.Event()

    async def on_failure() -> None:
        reported.set()

    loops = BackgroundLoops(timedelta(seconds=1), on_failure=on_failure)
    loops.start("broken", BrokenLoop())
    async with asyncio.timeout(5):
        await reported.wait()
        await loops.stop()
    assert "the broken loop failed" in caplog.text


async def test_stop_without_loops_returns() -> None:
    async with asyncio.timeout(1):
        await BackgroundLoops(timedelta(seconds=1)).stop()
