"""Takes the caller's correlation id (or makes one) and echoes it in the response headers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from rased.common.correlation import CORRELATION_HEADER, accept_correlation_id
from rased.common.interceptors.base import CallInterceptor, Context


def _received(context: Context) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == CORRELATION_HEADER and isinstance(value, str):
            return value
    return None


class CorrelationInterceptor(CallInterceptor):
    """Puts the correlation id in the call's context so logs and outgoing messages carry it."""

    async def around_unary(
        self, method: str, context: Context, call: Callable[[], Awaitable[Any]]
    ) -> Any:
        """Set the id for a unary-response call."""
        value = accept_correlation_id(_received(context))
        await context.send_initial_metadata(((CORRELATION_HEADER, value),))
        return await call()

    async def around_stream(
        self, method: str, context: Context, responses: AsyncIterator[Any]
    ) -> AsyncIterator[Any]:
        """Set the id for a streaming-response call."""
        value = accept_correlation_id(_received(context))
        await context.send_initial_metadata(((CORRELATION_HEADER, value),))
        async for response in responses:
            yield response
