"""gRPC servicers of the ingestion process: IngestService and SessionService."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

from google.protobuf import timestamp_pb2

from rased.common.errors import QuotaExceeded, RasedError
from rased.common.interceptors.base import Context
from rased.services.ingestion.intake import BatchIntake
from rased.services.ingestion.ports import Authenticator, SessionTokenIssuer
from rased.v1 import ingest_pb2, ingest_pb2_grpc, session_pb2, session_pb2_grpc

# Methods whose requests the intake validates itself, after authentication.
SELF_VALIDATED = frozenset(
    {"/rased.v1.IngestService/SubmitBatch", "/rased.v1.IngestService/StreamBatches"}
)


def _metadata(context: Context, key: str) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == key and isinstance(value, str):
            return value
    return None


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    """Translates IngestService calls to the intake."""

    def __init__(self, intake: BatchIntake) -> None:
        self.intake = intake

    async def SubmitBatch(  # noqa: N802 - gRPC's method name
        self, request: ingest_pb2.SubmitBatchRequest, context: Context
    ) -> ingest_pb2.SubmitBatchResponse:
        """Accept one batch."""
        caller = await self.intake.authenticate(
            _metadata(context, "authorization"), _metadata(context, "origin")
        )
        return await self.intake.submit(caller, request)

    async def StreamBatches(  # noqa: N802 - gRPC's method name
        self, request_iterator: AsyncIterator[ingest_pb2.StreamBatchesRequest], context: Context
    ) -> ingest_pb2.StreamBatchesResponse:
        """Accept a stream of batches; refused ones are counted (and were recorded)."""
        caller = await self.intake.authenticate(
            _metadata(context, "authorization"), _metadata(context, "origin")
        )
        summary = ingest_pb2.StreamBatchesResponse()
        async for item in request_iterator:
            request = ingest_pb2.SubmitBatchRequest()
            request.ParseFromString(item.SerializeToString())
            try:
                result = await self.intake.submit(caller, request)
            except QuotaExceeded:
                # Slowing the stream down is the caller's job: end it with the retry delay.
                raise
            except RasedError:
                summary.rejected += 1
                continue
            summary.accepted += 1
            if result.disposition == ingest_pb2.BATCH_DISPOSITION_FLUSHED:
                summary.flushed_transactions += 1
            summary.results.append(result)
        return summary


class SessionServicer(session_pb2_grpc.SessionServiceServicer):
    """Mints session tokens for callers holding a secret key."""

    def __init__(self, authenticator: Authenticator, tokens: SessionTokenIssuer) -> None:
        self.authenticator = authenticator
        self.tokens = tokens

    async def CreateSession(  # noqa: N802 - gRPC's method name
        self, request: session_pb2.CreateSessionRequest, context: Context
    ) -> session_pb2.CreateSessionResponse:
        """Return a token scoped to the caller's organization and one session."""
        caller = await self.authenticator.authenticate_secret(_metadata(context, "authorization"))
        session_id = request.session_id or _new_session_id()
        ttl = timedelta(seconds=request.ttl_seconds) if request.ttl_seconds else None
        token, expires = self.tokens.issue(
            caller.organization_id, session_id, request.user_id or None, ttl
        )
        expires_at = timestamp_pb2.Timestamp()
        expires_at.FromDatetime(expires)
        return session_pb2.CreateSessionResponse(
            session_id=session_id, token=token, expires_at=expires_at
        )


def _new_session_id() -> str:
    import secrets

    return "sess_" + secrets.token_urlsafe(16)
