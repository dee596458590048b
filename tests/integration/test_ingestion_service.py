"""The ingestion service through a real gRPC client, on real PostgreSQL, Redis and Kafka."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
import grpc
import pytest
from aiokafka import AIOKafkaConsumer
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc import aio
from grpc_status import rpc_status
from pydantic import SecretStr

from rased.adapters.kafka.topics import KafkaTopicSettings, Topic, ensure_topics
from rased.adapters.postgres.keys import (
    ApiKeyKind,
    ApiKeyStore,
    EncryptionKeyStore,
    OrganizationStore,
)
from rased.adapters.postgres.results import PostgresPendingTransactions
from rased.common.crypto import MasterKeyring, generate_key, key_spec_entry
from rased.common.server import GrpcServer
from rased.devstack.base import ManagedServer
from rased.devstack.postgres import PostgresServer
from rased.migrations.postgres import apply_postgres_migrations
from rased.services.ingestion.jwe import encrypt_for
from rased.services.ingestion.main import build_server
from rased.services.ingestion.settings import IngestionSettings
from rased.services.results.ports import PendingStatus
from rased.v1 import (
    events_pb2,
    ingest_pb2,
    ingest_pb2_grpc,
    pipeline_pb2,
    session_pb2,
    session_pb2_grpc,
)

MASTER = key_spec_entry("test-1", generate_key())
SIGNING = "t" * 40


@dataclass
class Deployment:
    """An ingestion server and what a test needs to talk to it."""

    channel: aio.Channel
    organization_id: str
    secret_key: str
    publishable_key: str
    public_jwk: dict[str, object]
    topics: KafkaTopicSettings
    bootstrap: str
    server: GrpcServer
    postgres_dsn: str

    def ingest(self) -> ingest_pb2_grpc.IngestServiceAsyncStub:
        return ingest_pb2_grpc.IngestServiceStub(self.channel)

    def sessions(self) -> session_pb2_grpc.SessionServiceAsyncStub:
        return session_pb2_grpc.SessionServiceStub(self.channel)

    async def token(self, session_id: str = "sess-1") -> str:
        reply = await self.sessions().CreateSession(
            session_pb2.CreateSessionRequest(session_id=session_id, user_id="user-7"),
            metadata=(("authorization", f"Bearer {self.secret_key}"),),
        )
        return reply.token

    async def status(self, transaction_id: str) -> PendingStatus | None:
        pool = await asyncpg.create_pool(self.postgres_dsn, min_size=1, max_size=1)
        try:
            return await PostgresPendingTransactions(pool).status(
                self.organization_id, transaction_id
            )
        finally:
            await pool.close()

    async def consume(self, topic: Topic, count: int, wait_seconds: float = 20) -> list[bytes]:
        consumer = AIOKafkaConsumer(
            self.topics.topic_name(topic),
            bootstrap_servers=self.bootstrap,
            group_id=f"test-{uuid.uuid4().hex}",
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )
        await consumer.start()
        values: list[bytes] = []
        try:
            async with asyncio.timeout(wait_seconds):
                while len(values) < count:
                    batches = await consumer.getmany(timeout_ms=500)
                    values += [m.value for ms in batches.values() for m in ms if m.value]
        finally:
            await consumer.stop()
        return values


@pytest.fixture
async def deployment(
    postgres_server: ManagedServer, redis_server: ManagedServer, kafka_server: ManagedServer
) -> AsyncIterator[Deployment]:
    assert isinstance(postgres_server, PostgresServer)
    await postgres_server.bootstrap()
    await apply_postgres_migrations(postgres_server.dsn())
    stack = postgres_server.settings
    bootstrap = f"{stack.host}:{stack.kafka_port}"
    tag = uuid.uuid4().hex[:10]
    topics = KafkaTopicSettings(prefix=f"t{tag}-")
    await ensure_topics(bootstrap, topics)

    pool = await asyncpg.create_pool(postgres_server.dsn(), min_size=1, max_size=2)
    org = await OrganizationStore(pool).create(f"bank-{tag}")
    keys = ApiKeyStore(pool)
    _, secret = await keys.create(org, ApiKeyKind.SECRET)
    _, publishable = await keys.create(
        org, ApiKeyKind.PUBLISHABLE, allowed_origins=["https://shop.example"]
    )
    jwk = await EncryptionKeyStore(pool, MasterKeyring.from_spec(MASTER)).create(org)
    await pool.close()

    settings = IngestionSettings(
        grpc_port=0,
        redis_url=f"redis://{stack.host}:{stack.redis_port}/0",
        redis_key_prefix=f"t{tag}:",
        postgres_dsn=postgres_server.dsn(),
        kafka_bootstrap_servers=bootstrap,
        session_token_secret=SecretStr(SIGNING),
        master_keys=SecretStr(MASTER),
        max_batch_bytes=64 * 1024,
        flush_max_bytes=1024 * 1024,
        rate_limit_per_session="10/minute",
        shutdown_drain=timedelta(0),
    )
    server = await build_server(settings, topics)
    port = await server.start()
    channel = aio.insecure_channel(f"127.0.0.1:{port}")
    yield Deployment(
        channel, org, secret, publishable, jwk, topics, bootstrap, server, postgres_server.dsn()
    )
    await channel.close()
    await server.shutdown()


def _batch(
    batch_id: str, txn: str = "txn-1", trigger: bool = False, session: str = "sess-1"
) -> events_pb2.EventBatch:
    batch = events_pb2.EventBatch(
        batch_id=batch_id,
        session_id=session,
        transaction_id=txn,
        client_sent_at_ms=1_764_000_000_000,
        trigger=trigger,
    )
    for i in range(5):
        batch.events.add(
            timestamp_ms=1_764_000_000_000 + i,
            pointer=events_pb2.PointerEvent(action=events_pb2.POINTER_ACTION_MOVE, x=i, y=2 * i),
        )
    return batch


def _bearer(credential: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {credential}"),)


async def test_batches_buffer_then_a_trigger_publishes_the_transaction(
    deployment: Deployment,
) -> None:
    token = await deployment.token()
    stub = deployment.ingest()
    first = await stub.SubmitBatch(
        ingest_pb2.SubmitBatchRequest(batch=_batch("batch-0001")), metadata=_bearer(token)
    )
    assert first.disposition == ingest_pb2.BATCH_DISPOSITION_BUFFERED
    assert first.buffered_batches == 1
    assert await deployment.status("txn-1") == PendingStatus.BUFFERED
    again = await stub.SubmitBatch(
        ingest_pb2.SubmitBatchRequest(batch=_batch("batch-0001")), metadata=_bearer(token)
    )
    assert again.disposition == ingest_pb2.BATCH_DISPOSITION_DUPLICATE
    last = await stub.SubmitBatch(
        ingest_pb2.SubmitBatchRequest(batch=_batch("batch-0002", trigger=True)),
        metadata=_bearer(token),
    )
    assert last.disposition == ingest_pb2.BATCH_DISPOSITION_FLUSHED
    assert last.flush_reason == ingest_pb2.FLUSH_REASON_TRIGGER
    assert await deployment.status("txn-1") == PendingStatus.SCORING

    for topic in (Topic.AI_PROCESSING, Topic.DATA_PERSISTENCE):
        (value,) = await deployment.consume(topic, 1)
        compiled = pipeline_pb2.CompiledTransaction.FromString(value)
        assert compiled.organization_id == deployment.organization_id
        assert compiled.transaction_id == "txn-1"
        assert compiled.user_id == "user-7"
        assert [b.batch_id for b in compiled.batches] == ["batch-0001", "batch-0002"]
        assert compiled.event_count == 10
        assert compiled.flush_reason == ingest_pb2.FLUSH_REASON_TRIGGER


async def test_bad_credentials_are_unauthenticated(deployment: Deployment) -> None:
    stub = deployment.ingest()
    request = ingest_pb2.SubmitBatchRequest(batch=_batch("batch-0003"))
    forged = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJzZXNzLTEifQ."
    for metadata in ((), _bearer("garbage"), _bearer(forged), _bearer(deployment.secret_key)):
        with pytest.raises(aio.AioRpcError) as caught:
            await stub.SubmitBatch(request, metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # A publishable key may ingest from its allowed origin only, and never mint sessions.
    ok = await stub.SubmitBatch(
        request,
        metadata=(*_bearer(deployment.publishable_key), ("origin", "https://shop.example")),
    )
    assert ok.disposition == ingest_pb2.BATCH_DISPOSITION_BUFFERED
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.SubmitBatch(
            request,
            metadata=(*_bearer(deployment.publishable_key), ("origin", "https://evil.example")),
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(aio.AioRpcError) as caught:
        await deployment.sessions().CreateSession(
            session_pb2.CreateSessionRequest(), metadata=_bearer(deployment.publishable_key)
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_invalid_and_oversized_batches_are_refused_and_recorded(
    deployment: Deployment,
) -> None:
    token = await deployment.token()
    stub = deployment.ingest()
    bad = _batch("batch-0004")
    bad.transaction_id = "has spaces"
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.SubmitBatch(ingest_pb2.SubmitBatchRequest(batch=bad), metadata=_bearer(token))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(caught.value)
    assert status is not None
    details = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(details)
    assert [v.field for v in details.field_violations] == ["transaction_id"]

    huge = _batch("batch-0005")
    huge.events.add(
        timestamp_ms=1_764_000_000_100,
        device=events_pb2.DeviceInfo(languages=["x" * 30] * 30, user_agent="u" * 1000),
    )
    for i in range(100):
        huge.events.add(
            timestamp_ms=1_764_000_000_200 + i,
            device=events_pb2.DeviceInfo(user_agent="u" * 1000),
        )
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.SubmitBatch(ingest_pb2.SubmitBatchRequest(batch=huge), metadata=_bearer(token))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(caught.value)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.reason == "PAYLOAD_TOO_LARGE"

    rejected = [
        pipeline_pb2.RejectedBatch.FromString(v)
        for v in await deployment.consume(Topic.REJECTED_EVENTS, 2)
    ]
    stages = sorted(r.stage for r in rejected)
    assert stages == [
        pipeline_pb2.REJECTION_STAGE_VALIDATION,
        pipeline_pb2.REJECTION_STAGE_SIZE_LIMIT,
    ]
    invalid = next(r for r in rejected if r.stage == pipeline_pb2.REJECTION_STAGE_VALIDATION)
    assert events_pb2.EventBatch.FromString(invalid.raw) == bad
    assert invalid.organization_id == deployment.organization_id


async def test_rate_limit_says_when_to_retry(deployment: Deployment) -> None:
    token = await deployment.token("sess-burst")
    stub = deployment.ingest()
    codes: list[grpc.StatusCode] = []
    retry_after: str | None = None
    for i in range(15):
        try:
            await stub.SubmitBatch(
                ingest_pb2.SubmitBatchRequest(
                    batch=_batch(f"burst-{i:04d}", txn="txn-burst", session="sess-burst")
                ),
                metadata=_bearer(token),
            )
            codes.append(grpc.StatusCode.OK)
        except aio.AioRpcError as error:
            codes.append(error.code())
            retry_after = dict(error.trailing_metadata() or ()).get("retry-after")
    assert codes.count(grpc.StatusCode.OK) == 10
    assert set(codes[10:]) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert retry_after is not None and int(retry_after) >= 1


async def test_encrypted_batches_round_trip_and_tampering_is_refused(
    deployment: Deployment,
) -> None:
    token = await deployment.token()
    stub = deployment.ingest()
    batch = _batch("batch-jwe1", txn="txn-jwe", trigger=True)
    sealed = encrypt_for(deployment.public_jwk, json_format.MessageToJson(batch).encode())
    reply = await stub.SubmitBatch(
        ingest_pb2.SubmitBatchRequest(encrypted_batch=sealed), metadata=_bearer(token)
    )
    assert reply.disposition == ingest_pb2.BATCH_DISPOSITION_FLUSHED
    assert reply.transaction_id == "txn-jwe"

    head, key, iv, ciphertext, tag = sealed.split(".")
    flipped = ("A" if ciphertext[0] != "A" else "B") + ciphertext[1:]
    tampered = ".".join((head, key, iv, flipped, tag))
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.SubmitBatch(
            ingest_pb2.SubmitBatchRequest(encrypted_batch=tampered), metadata=_bearer(token)
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "decrypt" in (caught.value.details() or "")


async def test_a_stream_of_batches_is_summarised(deployment: Deployment) -> None:
    token = await deployment.token("sess-stream")

    async def batches() -> AsyncIterator[ingest_pb2.StreamBatchesRequest]:
        for i in range(3):
            yield ingest_pb2.StreamBatchesRequest(
                batch=_batch(f"stream-{i:04d}", "txn-s", trigger=i == 2, session="sess-stream")
            )
        broken = _batch("stream-0009", "txn-s", session="sess-stream")
        broken.batch_id = "!"
        yield ingest_pb2.StreamBatchesRequest(batch=broken)

    summary = await deployment.ingest().StreamBatches(batches(), metadata=_bearer(token))
    assert (summary.accepted, summary.rejected, summary.flushed_transactions) == (3, 1, 1)
