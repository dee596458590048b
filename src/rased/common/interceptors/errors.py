"""Maps domain errors to gRPC statuses with rich details; anything else is a generic INTERNAL."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc import aio
from grpc_status import rpc_status

from rased.common import errors
from rased.common.interceptors.base import CallInterceptor, Context

logger = logging.getLogger(__name__)

ERROR_DOMAIN = "rased.dev"

_CODES: tuple[tuple[type[errors.RasedError], int], ...] = (
    (errors.ValidationFailed, code_pb2.INVALID_ARGUMENT),
    (errors.PayloadTooLarge, code_pb2.RESOURCE_EXHAUSTED),
    (errors.Unauthenticated, code_pb2.UNAUTHENTICATED),
    (errors.PermissionDenied, code_pb2.PERMISSION_DENIED),
    (errors.NotFound, code_pb2.NOT_FOUND),
    (errors.AlreadyExists, code_pb2.ALREADY_EXISTS),
    (errors.FailedPrecondition, code_pb2.FAILED_PRECONDITION),
    (errors.QuotaExceeded, code_pb2.RESOURCE_EXHAUSTED),
    (errors.DependencyUnavailable, code_pb2.UNAVAILABLE),
)


def status_for(error: errors.RasedError) -> tuple[status_pb2.Status, list[tuple[str, str]]]:
    """Return the google.rpc.Status for a domain error, and extra trailing metadata."""
    code = next((c for kind, c in _CODES if isinstance(error, kind)), code_pb2.INTERNAL)
    status = status_pb2.Status(code=code, message=str(error))
    trailers: list[tuple[str, str]] = []
    if isinstance(error, errors.ValidationFailed):
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in error.violations
            ]
        )
        status.details.add().Pack(bad_request)
    elif isinstance(error, errors.PayloadTooLarge):
        # No gRPC code means "413"; the edge recognises this reason and answers 413.
        status.details.add().Pack(
            error_details_pb2.ErrorInfo(
                reason="PAYLOAD_TOO_LARGE",
                domain=ERROR_DOMAIN,
                metadata={
                    "limit_bytes": str(error.limit_bytes),
                    "actual_bytes": str(error.actual_bytes),
                },
            )
        )
    elif isinstance(error, errors.QuotaExceeded):
        seconds = max(error.retry_after.total_seconds(), 0.0)
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(seconds * 1e9))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        status.details.add().Pack(
            error_details_pb2.ErrorInfo(reason="RATE_LIMITED", domain=ERROR_DOMAIN)
        )
        # Whole seconds, rounded up, as HTTP's Retry-After wants them.
        trailers.append(("retry-after", str(max(1, math.ceil(seconds)))))
    return status, trailers


async def _abort(context: Context, error: BaseException) -> NoReturn:
    if isinstance(error, errors.RasedError):
        status, trailers = status_for(error)
        if isinstance(error, errors.DependencyUnavailable | errors.QuotaExceeded):
            logger.warning("call refused: %s", error)
    elif isinstance(error, NotImplementedError):
        # What grpc's generated base servicer raises for a method the service lacks.
        status, trailers = (
            status_pb2.Status(code=code_pb2.UNIMPLEMENTED, message="method not implemented"),
            [],
        )
    else:
        # The details stay in our log; the caller learns only that it failed.
        logger.error("unhandled error in servicer", exc_info=error)
        status, trailers = status_pb2.Status(code=code_pb2.INTERNAL, message="internal error"), []
    grpc_status = rpc_status.to_status(status)
    if trailers:
        grpc_status = _with_trailers(grpc_status, trailers)
    await context.abort_with_status(grpc_status)
    raise AssertionError("abort_with_status returned")  # pragma: no cover


class _Status(grpc.Status):
    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: Any) -> None:
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


def _with_trailers(status: grpc.Status, extra: list[tuple[str, str]]) -> grpc.Status:
    return _Status(status.code, status.details, (*status.trailing_metadata, *extra))


_PASS_THROUGH = (aio.AbortError, asyncio.CancelledError, GeneratorExit)


class ErrorInterceptor(CallInterceptor):
    """Turns exceptions from servicers and inner interceptors into statuses."""

    async def around_unary(
        self, method: str, context: Context, call: Callable[[], Awaitable[Any]]
    ) -> Any:
        """Run the call; map what it raises."""
        try:
            return await call()
        except _PASS_THROUGH:
            raise
        except Exception as exc:  # noqa: BLE001 - every error becomes a status
            await _abort(context, exc)

    async def around_stream(
        self, method: str, context: Context, responses: AsyncIterator[Any]
    ) -> AsyncIterator[Any]:
        """Relay the stream; map what it raises."""
        try:
            async for response in responses:
                yield response
        except _PASS_THROUGH:
            raise
        except Exception as exc:  # noqa: BLE001 - every error becomes a status
            await _abort(context, exc)
