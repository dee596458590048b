"""Coalescing the Redis commands of concurrent requests into shared pipelines.

Each request hands over a group of commands (a function that adds them to a pipeline);
every group queued during one turn of the event loop goes out in one pipeline, one round
trip. Under load this spreads redis-py's per-round-trip cost (the larger part of the
client's CPU per command on small machines) over many requests; a lone request waits for
nothing but the next loop turn. A group's commands stay consecutive and in order, which
is what the buffer's crash-safety relies on (an index write before the script it guards).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from rased.common.errors import DependencyUnavailable

Build = Callable[[Pipeline], None]
"""Adds one request's commands to a pipeline."""

# Groups per pipeline: bounds one reply's size and lets several pipelines overlap.
MAX_GROUPS = 128


def _dependency_error(exc: Exception, what: str) -> Exception:
    """The error a caller sees for a failed command (the service maps it to a status)."""
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        error: Exception = DependencyUnavailable(f"{what} is unavailable")
    elif isinstance(exc, ResponseError) and str(exc).startswith("OOM"):
        # noeviction: a full Redis refuses writes rather than drop buffered events.
        error = DependencyUnavailable(f"{what} is full")
    else:
        return exc
    error.__cause__ = exc
    return error


def _fail(groups: Sequence[tuple[Build, asyncio.Future[list[Any]]]], error: BaseException) -> None:
    for _build, future in groups:
        if not future.done():
            future.set_exception(error)


class PipelineCoalescer:
    """Sends queued command groups in shared pipelines; each caller gets its own results.

    Everything sent through it must be safe to send twice: after NOSCRIPT the groups that
    hit it are sent again once the scripts are loaded, and redis-py's retry after a dropped
    connection resends a whole pipeline.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        load_scripts: Callable[[], Awaitable[None]],
        what: str = "the event buffer (Redis)",
    ) -> None:
        """`what` names the store in the errors callers see."""
        self._client = client
        self._what = what
        self._load_scripts = load_scripts
        self._queue: list[tuple[Build, asyncio.Future[list[Any]]]] = []
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    async def execute(self, build: Build) -> list[Any]:
        """Queue one group of commands; return their replies once its pipeline is back.

        Raises:
            DependencyUnavailable: Redis is unreachable, loading, or out of memory.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._queue.append((build, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._dispatch)
        return await future

    def _dispatch(self) -> None:
        self._scheduled = False
        queued, self._queue = self._queue, []
        for start in range(0, len(queued), MAX_GROUPS):
            task = asyncio.get_running_loop().create_task(
                self._send(queued[start : start + MAX_GROUPS])
            )
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, groups: Sequence[tuple[Build, asyncio.Future[list[Any]]]]) -> None:
        error: BaseException
        try:
            for _attempt in range(2):
                groups = await self._send_once(groups)
                if not groups:
                    return
                # Redis restarted or its script cache was flushed.
                await self._load_scripts()
            error = RuntimeError("Redis kept answering NOSCRIPT after the scripts were loaded")
        except asyncio.CancelledError:
            # The loop is closing: the callers must not wait forever.
            _fail(groups, DependencyUnavailable(f"{self._what} was closed"))
            raise
        except Exception as exc:  # noqa: BLE001 - it goes to the callers waiting on it
            error = _dependency_error(exc, self._what)
        _fail(groups, error)

    async def _send_once(
        self, groups: Sequence[tuple[Build, asyncio.Future[list[Any]]]]
    ) -> list[tuple[Build, asyncio.Future[list[Any]]]]:
        """Send the groups in one pipeline; return those to resend after NOSCRIPT."""
        pipe = self._client.pipeline(transaction=False)
        bounds: list[tuple[int, int]] = []
        for build, _future in groups:
            start = len(pipe)
            build(pipe)
            bounds.append((start, len(pipe)))
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        retry: list[tuple[Build, asyncio.Future[list[Any]]]] = []
        for (build, future), (start, end) in zip(groups, bounds, strict=True):
            own = replies[start:end]
            if any(isinstance(reply, NoScriptError) for reply in own):
                retry.append((build, future))
                continue
            if future.done():  # the caller was cancelled; its commands ran all the same
                continue
            failed = next((reply for reply in own if isinstance(reply, Exception)), None)
            if failed is not None:
                future.set_exception(_dependency_error(failed, self._what))
            else:
                future.set_result(own)
        return retry
