"""A base for grpc.aio server interceptors that act around each call and on each request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from grpc import aio

# The server-side context of any call (request and response types vary by method).
Context = aio.ServicerContext[Any, Any]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # generic only in the stubs


class CallInterceptor(aio.ServerInterceptor):
    """Wraps every method handler so subclasses see each request and each call's outcome.

    The first interceptor given to the server is the outermost: an exception raised by an
    inner one (or by the servicer) passes through the outer ones' `around_*` hooks.
    """

    async def on_request(self, method: str, request: Any, context: Context) -> None:
        """Inspect one request message before the servicer sees it (may raise)."""

    async def around_unary(
        self, method: str, context: Context, call: Callable[[], Awaitable[Any]]
    ) -> Any:
        """Run a call that answers one message; override to act before and after it."""
        return await call()

    def around_stream(
        self, method: str, context: Context, responses: AsyncIterator[Any]
    ) -> AsyncIterator[Any]:
        """Pass through a call that answers a stream; override to act around it."""
        return responses

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        """Wrap the handler grpc found for this method (None passes through: unknown method)."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return _wrap(self, handler_call_details.method, handler)


def _wrap(interceptor: CallInterceptor, method: str, handler: Handler) -> Handler:
    async def checked(requests: AsyncIterator[Any], context: Context) -> Any:
        async for request in requests:
            await interceptor.on_request(method, request, context)
            yield request

    # The handler's behaviors are typed for the sync API; here they are coroutines.
    behaviors: Any = handler
    if behaviors.unary_unary is not None:
        inner_uu = behaviors.unary_unary

        async def unary_unary(request: Any, context: Context) -> Any:
            async def call() -> Any:
                await interceptor.on_request(method, request, context)
                return await inner_uu(request, context)

            return await interceptor.around_unary(method, context, call)

        return grpc.unary_unary_rpc_method_handler(
            unary_unary, handler.request_deserializer, handler.response_serializer
        )
    if behaviors.unary_stream is not None:
        inner_us = behaviors.unary_stream

        async def unary_stream(request: Any, context: Context) -> AsyncIterator[Any]:
            async def responses() -> AsyncIterator[Any]:
                await interceptor.on_request(method, request, context)
                async for response in inner_us(request, context):
                    yield response

            async for response in interceptor.around_stream(method, context, responses()):
                yield response

        return grpc.unary_stream_rpc_method_handler(
            unary_stream, handler.request_deserializer, handler.response_serializer
        )
    if behaviors.stream_unary is not None:
        inner_su = behaviors.stream_unary

        async def stream_unary(requests: AsyncIterator[Any], context: Context) -> Any:
            return await interceptor.around_unary(
                method, context, lambda: inner_su(checked(requests, context), context)
            )

        return grpc.stream_unary_rpc_method_handler(
            stream_unary, handler.request_deserializer, handler.response_serializer
        )
    inner_ss = behaviors.stream_stream

    async def stream_stream(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        responses = inner_ss(checked(requests, context), context)
        async for response in interceptor.around_stream(method, context, responses):
            yield response

    return grpc.stream_stream_rpc_method_handler(
        stream_stream, handler.request_deserializer, handler.response_serializer
    )
