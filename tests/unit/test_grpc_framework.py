"""The service framework seen from a real gRPC client: validation, errors, health, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from rased.common import errors
from rased.common.correlation import CORRELATION_HEADER, current_correlation_id
from rased.common.interceptors.base import Context
from rased.common.server import GrpcServer
from rased.common.settings import ServiceSettings
from rased.v1 import events_pb2, ingest_pb2, ingest_pb2_grpc

SERVICE = "rased.v1.IngestService"


class _IngestForTests(ingest_pb2_grpc.IngestServiceServicer):
    """A servicer whose behavior the test picks through the batch's transaction id."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.seen_correlation_ids: list[str | None] = []

    async def SubmitBatch(
        self, request: ingest_pb2.SubmitBatchRequest, context: Context
    ) -> ingest_pb2.SubmitBatchResponse:
        self.seen_correlation_ids.append(current_correlation_id())
        txn = request.batch.transaction_id
        if txn == "slow":
            self.started.set()
            await asyncio.sleep(1.5)
        elif txn == "missing":
            raise errors.NotFound("no such transaction")
        elif txn == "limited":
            raise errors.QuotaExceeded("too many batches", timedelta(seconds=2.5))
        elif txn == "too-big":
            raise errors.PayloadTooLarge("batch of 900 KB over 512 KB", 512_000, 900_000)
        elif txn == "bug":
            raise KeyError("secret-internal-detail")
        return ingest_pb2.SubmitBatchResponse(
            batch_id=request.batch.batch_id,
            transaction_id=txn,
            disposition=ingest_pb2.BATCH_DISPOSITION_BUFFERED,
        )

    async def StreamBatches(
        self,
        request_iterator: AsyncIterator[ingest_pb2.StreamBatchesRequest],
        context: Context,
    ) -> ingest_pb2.StreamBatchesResponse:
        count = 0
        async for _ in request_iterator:
            count += 1
        return ingest_pb2.StreamBatchesResponse(accepted=count)


def _batch(txn: str = "txn-1", **changes: object) -> events_pb2.EventBatch:
    batch = events_pb2.EventBatch(
        batch_id="batch-0001",
        session_id="sess-1",
        transaction_id=txn,
        client_sent_at_ms=1_764_000_000_000,
        events=[
            events_pb2.Event(
                timestamp_ms=1_764_000_000_000,
                pointer=events_pb2.PointerEvent(action=events_pb2.POINTER_ACTION_MOVE, x=10, y=20),
            )
        ],
    )
    for name, value in changes.items():
        setattr(batch, name, value)
    return batch


@pytest.fixture
async def running() -> AsyncIterator[tuple[GrpcServer, _IngestForTests, aio.Channel]]:
    servicer = _IngestForTests()

    def register(server: aio.Server) -> Sequence[str]:
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server)
        return [SERVICE]

    settings = ServiceSettings(
        service_name="test",
        grpc_port=0,
        shutdown_drain=timedelta(seconds=0.5),
        shutdown_grace=timedelta(seconds=5),
    )
    server = GrpcServer(settings, register)
    port = await server.start()
    channel = aio.insecure_channel(f"127.0.0.1:{port}")
    yield server, servicer, channel
    await channel.close()
    await server.shutdown()


async def test_valid_batch_is_answered(
    running: tuple[GrpcServer, _IngestForTests, aio.Channel],
) -> None:
    _, _, channel = running
    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    reply = await stub.SubmitBatch(ingest_pb2.SubmitBatchRequest(batch=_batch()))
    assert reply.disposition == ingest_pb2.BATCH_DISPOSITION_BUFFERED
    assert reply.transaction_id == "txn-1"


async def test_validation_failure_names_the_field_paths(
    running: tuple[GrpcServer, _IngestForTests, aio.Channel],
) -> None:
    _, _, channel = running
    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    batch = _batch()
    batch.events[0].pointer.x = float("nan")
    batch.events.add(timestamp_ms=5)  # second event: no kind set
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.SubmitBatch(ingest_pb2.SubmitBatchRequest(batch=batch))
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(error)
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    fields = {v.field for v in bad_request.field_violations}
    assert "batch.events[0].pointer.x" in fields
    assert any(f.startswith("batch.events[1]") for f in fields), fields
    assert "batch.events[0].pointer.x" in (error.details() or "")


async def test_missing_oneof_is_invalid(
    running: tuple[GrpcServer, _IngestForTests, aio.Channel],
) -> None:
    _, _, channel = running
    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.SubmitBatch(ingest_pb2.SubmitBatchRequest())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_streamed_requests_are_validated_each(
    running: tuple[GrpcServer, _IngestForTests, aio.Channel],
) -> None:
    _, _, channel = running
    stub = ingest_pb2_grpc.IngestServiceStub(channel)

    async def requests() -> AsyncIterator[ingest_pb2.StreamBatchesRequest]:
        yield ingest_pb2.StreamBatchesRequest(batch=_batch())
        yield ingest_pb2.StreamBatchesRequest(batch=_batch(session_id="has spaces"))

    with pytest.raises(aio.AioRpcError) as caught:
        await stub.StreamBatches(requests())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "batch.session_id" in (caught.value.details() or "")

    async def good() -> AsyncIterator[ingest_pb2.StreamBatchesRequest]:
        for _ in range(3):
            yield ingest_pb2.StreamBatchesRequest(batch=_batch())

    assert (await stub.StreamBatches(good())).accepted == 3


@pytest.mark.parametrize(
    ("txn", "code"),
    [
        ("missing", grpc.StatusCode.NOT_FOUND),
        ("limited", grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("too-big", grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("bug", grpc.StatusCode.INTERNAL),
    ],
)
async def test_domain_errors_map_to_statuses(
    running: tuple[GrpcServer, _IngestForTests, aio.Channel], txn: str, code: grpc.StatusCode
) -> None:
    _, _, channel = running
    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.SubmitBatch(ingest_pb2.SubmitBatchRequest(batch=_batch(txn)))
    error = caught.value
    assert error.code() == code
    if txn == "bug":
        # The caller learns nothing of the internals.
        assert error.details() == "internal error"
    if txn == "limited":
        trailers = dict(error.trailing_metadata() or ())
        assert trailers.get("retry-after") == "3"
        status = rpc_status.from_call(error)
        assert status is not None
        retry = error_details_pb2.RetryInfo()
        assert any(d.Unpack(retry) for d in status.details)
        assert retry.retry_delay.ToMilliseconds() == 2500
    if txn == "too-big":
        status = rpc_status.from_call(error)
        assert status is not None
        info = error_details_pb2.ErrorInfo()
        assert status.details[0].Unpack(info)
        assert info.reason == "PAYLOAD_TOO_LARGE"
        assert info.metadata["limit_bytes"] == "512000"


async def test_correlation_id_is_kept_or_made(
    running: tuple[GrpcServer, _IngestForTests, aio.Channel],
) -> None:
    _, servicer, channel = running
    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    call = stub.SubmitBatch(
        ingest_pb2.SubmitBatchRequest(batch=_batch()),
        metadata=((CORRELATION_HEADER, "corr-123"),),
    )
    await call
    assert dict(await call.initial_metadata())[CORRELATION_HEADER] == "corr-123"
    call = stub.SubmitBatch(ingest_pb2.SubmitBatchRequest(batch=_batch()))
    await call
    made = dict(await call.initial_metadata())[CORRELATION_HEADER]
    assert made and made != "corr-123"
    assert servicer.seen_correlation_ids == ["corr-123", made]


async def test_health_serving_then_not_serving_and_in_flight_call_completes(
    running: tuple[GrpcServer, _IngestForTests, aio.Channel],
) -> None:
    server, servicer, channel = running
    health = health_pb2_grpc.HealthStub(channel)
    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    for name in ("", SERVICE):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

    in_flight = asyncio.ensure_future(
        stub.SubmitBatch(ingest_pb2.SubmitBatchRequest(batch=_batch("slow")))
    )
    await asyncio.wait_for(servicer.started.wait(), timeout=5)
    shutdown = asyncio.ensure_future(server.shutdown())
    await asyncio.sleep(0.1)
    reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
    assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING

    answer = await in_flight
    assert answer.transaction_id == "slow"
    await shutdown
    # After shutdown the server refuses calls.
    with pytest.raises(aio.AioRpcError) as caught:
        await health.Check(health_pb2.HealthCheckRequest(), timeout=2)
    assert caught.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    # A second shutdown is harmless.
    await server.shutdown()


async def test_reflection_lists_the_services(
    running: tuple[GrpcServer, _IngestForTests, aio.Channel],
) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    _, _, channel = running
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async for reply in stub.ServerReflectionInfo(ask()):
        names = {s.name for s in reply.list_services_response.service}
        assert {SERVICE, "grpc.health.v1.Health"} <= names
        break
