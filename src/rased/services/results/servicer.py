"""gRPC servicer of ResultsService: protobuf in, domain calls, protobuf out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC
from typing import Protocol

from rased.common.interceptors.base import Context
from rased.services.ingestion.ports import Caller
from rased.services.results.domain import Results
from rased.services.results.ports import PendingStatus, ResultFilter
from rased.v1 import results_pb2, results_pb2_grpc

_STATUSES = {
    PendingStatus.BUFFERED: results_pb2.RESULT_STATUS_BUFFERED,
    PendingStatus.SCORING: results_pb2.RESULT_STATUS_SCORING,
}


class SecretKeyAuthenticator(Protocol):
    """Accepts a secret API key from the `authorization` metadata."""

    async def authenticate_secret(self, authorization: str | None) -> Caller:
        """Return the key's caller (its organization); raise Unauthenticated otherwise."""
        ...


def _authorization(context: Context) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == "authorization" and isinstance(value, str):
            return value
    return None


def _filters(request: results_pb2.ListResultsRequest) -> ResultFilter:
    return ResultFilter(
        start=request.start_time.ToDatetime(tzinfo=UTC) if request.HasField("start_time") else None,
        end=request.end_time.ToDatetime(tzinfo=UTC) if request.HasField("end_time") else None,
        risk_levels=frozenset(request.risk_levels),
    )


class ResultsServicer(results_pb2_grpc.ResultsServiceServicer):
    """Serves the caller's organization's results; the organization comes from the key."""

    def __init__(self, authenticator: SecretKeyAuthenticator, results: Results) -> None:
        self.authenticator = authenticator
        self.results = results

    async def GetResult(  # noqa: N802 - gRPC's method name
        self, request: results_pb2.GetResultRequest, context: Context
    ) -> results_pb2.GetResultResponse:
        """Return the latest result or the pending status."""
        caller = await self.authenticator.authenticate_secret(_authorization(context))
        state = await self.results.get(caller.organization_id, request.transaction_id)
        if state.result is not None:
            return results_pb2.GetResultResponse(
                status=results_pb2.RESULT_STATUS_SCORED, result=state.result
            )
        assert state.pending is not None  # the domain returns one or the other
        return results_pb2.GetResultResponse(status=_STATUSES[state.pending])

    async def ListResults(  # noqa: N802 - gRPC's method name
        self, request: results_pb2.ListResultsRequest, context: Context
    ) -> results_pb2.ListResultsResponse:
        """Return one page of results, newest first."""
        caller = await self.authenticator.authenticate_secret(_authorization(context))
        page = await self.results.page(
            caller.organization_id, _filters(request), request.page_size, request.page_token
        )
        return results_pb2.ListResultsResponse(
            results=page.results, next_page_token=page.next_page_token
        )

    async def WatchResults(  # noqa: N802 - gRPC's method name
        self, request: results_pb2.WatchResultsRequest, context: Context
    ) -> AsyncIterator[results_pb2.WatchResultsResponse]:
        """Stream results after the request's cursor, then new ones as they are stored."""
        caller = await self.authenticator.authenticate_secret(_authorization(context))
        async for result in self.results.watch(
            caller.organization_id, request.after_cursor, request.from_beginning
        ):
            yield results_pb2.WatchResultsResponse(result=result)
