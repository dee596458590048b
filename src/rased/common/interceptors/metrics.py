"""Counts calls and times them, per method and status code, for Prometheus."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from rased.common.interceptors.base import CallInterceptor, Context
from rased.common.metrics import GRPC_HANDLED, GRPC_HANDLING_SECONDS, GRPC_STARTED


def _split(method: str) -> tuple[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return service, name


def _code(context: Context, error: BaseException | None) -> str:
    if error is None:
        return grpc.StatusCode.OK.name
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(error, BaseException) and type(error).__name__ == "CancelledError":
        return grpc.StatusCode.CANCELLED.name
    return grpc.StatusCode.UNKNOWN.name


class MetricsInterceptor(CallInterceptor):
    """Records rased_grpc_server_{started,handled}_total and handling time."""

    async def around_unary(
        self, method: str, context: Context, call: Callable[[], Awaitable[Any]]
    ) -> Any:
        """Time one unary-response call."""
        service, name = _split(method)
        GRPC_STARTED.labels(service, name).inc()
        start = time.perf_counter()
        error: BaseException | None = None
        try:
            return await call()
        except BaseException as exc:
            error = exc
            raise
        finally:
            GRPC_HANDLED.labels(service, name, _code(context, error)).inc()
            GRPC_HANDLING_SECONDS.labels(service, name).observe(time.perf_counter() - start)

    async def around_stream(
        self, method: str, context: Context, responses: AsyncIterator[Any]
    ) -> AsyncIterator[Any]:
        """Time one streaming-response call."""
        service, name = _split(method)
        GRPC_STARTED.labels(service, name).inc()
        start = time.perf_counter()
        error: BaseException | None = None
        try:
            async for response in responses:
                yield response
        except BaseException as exc:
            error = exc
            raise
        finally:
            GRPC_HANDLED.labels(service, name, _code(context, error)).inc()
            GRPC_HANDLING_SECONDS.labels(service, name).observe(time.perf_counter() - start)
