"""Transaction buffering on the real Redis and Kafka: triggers, dedup, races, crashes, restarts.

Every test has its own Redis key prefix and its own Kafka topics (a topic prefix), and reads
what was published back from both compiled-transaction topics.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from rased.adapters.kafka.event_bus import KafkaEventBus
from rased.adapters.kafka.topics import KafkaTopicSettings, Topic, ensure_topics
from rased.adapters.redis import event_buffer
from rased.adapters.redis.event_buffer import RedisEventBuffer
from rased.common.correlation import set_correlation_id
from rased.devstack.base import ManagedServer, pid_is_alive, port_is_free
from rased.services.ingestion.buffer_store import AppendResult, MoveStatus, TransactionKey
from rased.services.ingestion.buffering import (
    TransactionBuffering,
    compile_segment,
    frame_batch,
)
from rased.services.ingestion.ports import BufferOutcome, BufferPolicy
from rased.v1 import events_pb2, ingest_pb2, pipeline_pb2

ORG = "5f0c6c1e-3a57-4d53-9a55-0d5f3b1c2a10"
SESSION = "sess-1"
IDLE = timedelta(minutes=5).total_seconds()
COMPILED_TOPICS = (Topic.AI_PROCESSING, Topic.DATA_PERSISTENCE)


def _progress(message: str) -> None:
    print(f"[stack] {message}", flush=True)


class FakeClock:
    """A clock the test moves by hand (seconds since the epoch)."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_batch(
    transaction_id: str,
    number: int,
    *,
    events: int = 3,
    trigger: bool = False,
    session_id: str = SESSION,
    start_ms: int = 1_700_000_000_000,
) -> events_pb2.EventBatch:
    """A valid batch with pointer events; batch ids are unique per (transaction, number)."""
    batch = events_pb2.EventBatch(
        batch_id=f"b{number:06d}-{uuid.uuid5(uuid.NAMESPACE_OID, transaction_id).hex[:12]}",
        session_id=session_id,
        transaction_id=transaction_id,
        sequence=number,
        client_sent_at_ms=start_ms + number * 1000,
        sdk_version="1.0.0",
        trigger=trigger,
    )
    for index in range(events):
        batch.events.add(
            timestamp_ms=start_ms + number * 1000 + index,
            pointer=events_pb2.PointerEvent(
                action=events_pb2.POINTER_ACTION_MOVE, x=float(index), y=float(number)
            ),
        )
    return batch


def _redis_client(host: str, port: int) -> aioredis.Redis:
    """A client as the service should build one: a pool that waits for a free connection
    (redis-py's default pool fails past 100 commands in flight), and retries after a
    dropped connection (safe: every command the buffer sends is idempotent)."""
    pool = aioredis.BlockingConnectionPool(
        host=host,
        port=port,
        max_connections=32,
        timeout=20,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=10),
    )
    return aioredis.Redis(connection_pool=pool)


@dataclass
class Published:
    """One message read back from a compiled-transaction topic."""

    topic: Topic
    key: bytes
    value: bytes
    headers: dict[str, bytes]
    message: pipeline_pb2.CompiledTransaction = field(
        default_factory=pipeline_pb2.CompiledTransaction
    )

    @property
    def identity(self) -> tuple[str, str, int]:
        m = self.message
        return (m.organization_id, m.transaction_id, m.segment)


@dataclass
class Env:
    """What one test works with: a Redis client and key prefix, topics, and a started bus."""

    client: aioredis.Redis
    prefix: str
    topics: KafkaTopicSettings
    bootstrap: str
    bus: KafkaEventBus
    extra_clients: list[aioredis.Redis] = field(default_factory=list)

    def store(self, policy: BufferPolicy, own_client: bool = False) -> RedisEventBuffer:
        """A buffer adapter under this test's prefix (on its own connection pool if asked)."""
        client = self.client
        if own_client:
            kwargs = self.client.connection_pool.connection_kwargs
            client = _redis_client(kwargs["host"], kwargs["port"])
            self.extra_clients.append(client)
        return RedisEventBuffer(client, policy, key_prefix=self.prefix)

    def buffering(
        self,
        policy: BufferPolicy,
        clock: Any = time.time,
        own_client: bool = False,
    ) -> TransactionBuffering:
        """An ingestion instance as the service builds it."""
        return TransactionBuffering(self.store(policy, own_client), self.bus, policy, clock)

    async def consume(
        self,
        expected: int,
        wait_s: float = 15.0,
        settle: float = 0.3,
        until: Callable[[list[Published]], bool] | None = None,
    ) -> list[Published]:
        """Read both compiled topics until `expected` messages each (or `until` holds), then
        `settle` s more, to see copies that should not be there."""
        names = {self.topics.topic_name(topic): topic for topic in COMPILED_TOPICS}
        consumer = AIOKafkaConsumer(
            *names,
            bootstrap_servers=self.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        out: list[Published] = []
        try:
            deadline = time.monotonic() + wait_s
            settled_at: float | None = None
            while time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=100)
                for records in batches.values():
                    for record in records:
                        message = pipeline_pb2.CompiledTransaction.FromString(record.value)
                        out.append(
                            Published(
                                topic=names[record.topic],
                                key=record.key,
                                value=record.value,
                                headers={k: bytes(v) for k, v in record.headers},
                                message=message,
                            )
                        )
                counts = Counter(p.topic for p in out)
                done = until(out) if until is not None else True
                if done and all(counts[topic] >= expected for topic in COMPILED_TOPICS):
                    settled_at = settled_at or time.monotonic()
                    if time.monotonic() - settled_at >= settle:
                        break
        finally:
            await consumer.stop()
        return out


@pytest.fixture
async def env(redis_server: ManagedServer, kafka_server: ManagedServer) -> AsyncIterator[Env]:
    """A fresh key prefix and fresh topics; deletes both afterwards."""
    unique = uuid.uuid4().hex[:12]
    settings = redis_server.settings
    client = _redis_client(settings.host, settings.redis_port)
    topics = KafkaTopicSettings(
        prefix=f"test-buffering-{unique}-",
        ai_processing_partitions=1,
        data_persistence_partitions=1,
        client_notification_partitions=1,
        rejected_events_partitions=1,
    )
    bootstrap = kafka_server.endpoint()
    await ensure_topics(bootstrap, topics)
    bus = KafkaEventBus(bootstrap, topics)
    await bus.start()
    environment = Env(client, f"test:{unique}:", topics, bootstrap, bus)
    try:
        yield environment
    finally:
        await bus.close()
        keys = [key async for key in client.scan_iter(match=f"{environment.prefix}*")]
        if keys:
            await client.delete(*keys)
        for extra in environment.extra_clients:
            await extra.aclose()
        await client.aclose()
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([topics.topic_name(topic) for topic in Topic])
        finally:
            await admin.close()


def _by_topic(published: Iterable[Published], topic: Topic) -> list[Published]:
    return [p for p in published if p.topic is topic]


def _batch_ids(message: pipeline_pb2.CompiledTransaction) -> list[str]:
    return [batch.batch_id for batch in message.batches]


async def _accept_all(
    buffering: TransactionBuffering, batches: Iterable[events_pb2.EventBatch]
) -> list[BufferOutcome]:
    return [await buffering.accept(ORG, "user-7", batch) for batch in batches]


def _assert_single_segment(
    published: list[Published],
    batches: list[events_pb2.EventBatch],
    reason: ingest_pb2.FlushReason.ValueType,
) -> pipeline_pb2.CompiledTransaction:
    """One identical message on each compiled topic, holding exactly these batches in order."""
    ai = _by_topic(published, Topic.AI_PROCESSING)
    persistence = _by_topic(published, Topic.DATA_PERSISTENCE)
    assert len(ai) == 1, [p.identity for p in ai]
    assert len(persistence) == 1, [p.identity for p in persistence]
    assert ai[0].value == persistence[0].value
    message = ai[0].message
    assert message.flush_reason == reason
    assert list(message.batches) == batches
    assert message.batch_count == len(batches)
    assert message.event_count == sum(len(b.events) for b in batches)
    assert message.byte_count == sum(b.ByteSize() for b in batches)
    stamps = [e.timestamp_ms for b in batches for e in b.events]
    assert (message.first_event_ms, message.last_event_ms) == (min(stamps), max(stamps))
    assert message.organization_id == ORG
    assert ai[0].key == f"{ORG}:{message.transaction_id}".encode()
    return message


# -- triggers ----------------------------------------------------------------------------


async def test_trigger_flag_flushes_everything_buffered(env: Env) -> None:
    """The flagged batch flushes the transaction with reason TRIGGER, headers and all."""
    buffering = env.buffering(BufferPolicy())
    batches = [make_batch("txn-flag", n, trigger=n == 3) for n in range(4)]
    set_correlation_id("corr-flag-1")
    parent = SpanContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736,
        span_id=0x00F067AA0BA902B7,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    with trace.use_span(NonRecordingSpan(parent)):
        outcomes = await _accept_all(buffering, batches)

    assert [o.disposition for o in outcomes] == [ingest_pb2.BATCH_DISPOSITION_BUFFERED] * 3 + [
        ingest_pb2.BATCH_DISPOSITION_FLUSHED
    ]
    assert [o.buffered_batches for o in outcomes] == [1, 2, 3, 0]
    assert outcomes[2].buffered_bytes == sum(b.ByteSize() for b in batches[:3])
    assert outcomes[3].flush_reason == ingest_pb2.FLUSH_REASON_TRIGGER
    assert outcomes[3].segment == 0

    published = await env.consume(1)
    message = _assert_single_segment(published, batches, ingest_pb2.FLUSH_REASON_TRIGGER)
    assert message.segment == 0
    assert message.user_id == "user-7"
    assert message.session_id == SESSION
    assert message.compiled_at.ToMilliseconds() == message.triggered_at_ms
    assert abs(message.triggered_at_ms - time.time() * 1000) < 60_000
    for p in published:
        assert p.headers["content-type"] == b"application/x-protobuf"
        assert p.headers["schema"] == b"rased.v1.CompiledTransaction"
        assert p.headers["correlation-id"] == b"corr-flag-1"
        assert b"4bf92f3577b34da6a3ce929d0e0e4736" in p.headers["traceparent"]
        assert "rased-redelivery" not in p.headers


async def test_more_than_max_batches_flushes_with_reason_batch_count(env: Env) -> None:
    """With max_batches=3 the fourth batch flushes all four."""
    buffering = env.buffering(BufferPolicy(max_batches=3))
    batches = [make_batch("txn-count", n) for n in range(5)]
    outcomes = await _accept_all(buffering, batches)

    assert [o.disposition for o in outcomes] == [
        ingest_pb2.BATCH_DISPOSITION_BUFFERED,
        ingest_pb2.BATCH_DISPOSITION_BUFFERED,
        ingest_pb2.BATCH_DISPOSITION_BUFFERED,
        ingest_pb2.BATCH_DISPOSITION_FLUSHED,
        ingest_pb2.BATCH_DISPOSITION_BUFFERED,
    ]
    assert outcomes[3].flush_reason == ingest_pb2.FLUSH_REASON_BATCH_COUNT
    assert outcomes[4].buffered_batches == 1  # the fifth opens the next segment

    published = await env.consume(1)
    _assert_single_segment(published, batches[:4], ingest_pb2.FLUSH_REASON_BATCH_COUNT)


async def test_the_301st_batch_flushes_with_the_default_policy(env: Env) -> None:
    """The real bound: 300 batches stay buffered, the 301st flushes all of them."""
    buffering = env.buffering(BufferPolicy())
    batches = [make_batch("txn-300", n, events=1) for n in range(301)]
    outcomes = await _accept_all(buffering, batches)

    assert outcomes[299].disposition == ingest_pb2.BATCH_DISPOSITION_BUFFERED
    assert outcomes[299].buffered_batches == 300
    assert outcomes[300].disposition == ingest_pb2.BATCH_DISPOSITION_FLUSHED
    assert outcomes[300].flush_reason == ingest_pb2.FLUSH_REASON_BATCH_COUNT

    published = await env.consume(1)
    _assert_single_segment(published, batches, ingest_pb2.FLUSH_REASON_BATCH_COUNT)


async def test_reaching_max_bytes_flushes_with_reason_size(env: Env) -> None:
    """Buffered bytes reaching max_bytes flush the transaction, the last batch included."""
    batches = [make_batch("txn-size", n, events=20) for n in range(6)]
    size = batches[0].ByteSize()
    # The bound is reached by the fourth batch (sizes differ by a few bytes at most).
    buffering = env.buffering(BufferPolicy(max_bytes=size * 4 - 10))
    outcomes = await _accept_all(buffering, batches)

    assert [o.disposition for o in outcomes[:4]] == [ingest_pb2.BATCH_DISPOSITION_BUFFERED] * 3 + [
        ingest_pb2.BATCH_DISPOSITION_FLUSHED
    ]
    assert outcomes[3].flush_reason == ingest_pb2.FLUSH_REASON_SIZE
    assert outcomes[5].buffered_batches == 2

    published = await env.consume(1)
    message = _assert_single_segment(published, batches[:4], ingest_pb2.FLUSH_REASON_SIZE)
    assert message.byte_count >= size * 4 - 10


async def test_idle_transactions_are_flushed_by_the_sweeper(env: Env) -> None:
    """Five minutes without a batch (on an injected clock) flush with reason IDLE, once."""
    clock = FakeClock(time.time())
    buffering = env.buffering(BufferPolicy(deadline_shards=4), clock)
    early = [make_batch("txn-idle", n) for n in range(2)]
    late = [make_batch("txn-late", n) for n in range(2)]
    await _accept_all(buffering, early)
    await buffering.accept(ORG, "user-7", late[0])
    clock.advance(4 * 60)
    await buffering.accept(ORG, "user-7", late[1])  # txn-late got a batch 4 minutes in

    start = clock.now - 4 * 60
    assert await buffering.sweep_once(start + IDLE - 1) == 0
    assert await buffering.sweep_once(start + IDLE + 1) == 1  # txn-idle only
    assert await buffering.sweep_once(start + IDLE + 2) == 0  # flushed once
    assert await buffering.sweep_once(clock.now + IDLE + 1) == 1  # now txn-late

    published = await env.consume(2)
    by_txn = {p.message.transaction_id: p for p in _by_topic(published, Topic.AI_PROCESSING)}
    assert set(by_txn) == {"txn-idle", "txn-late"}
    assert len(published) == 4
    for txn, batches in (("txn-idle", early), ("txn-late", late)):
        message = by_txn[txn].message
        assert list(message.batches) == batches
        assert message.flush_reason == ingest_pb2.FLUSH_REASON_IDLE
    # Nothing is left behind in the deadline index.
    store = env.store(BufferPolicy(deadline_shards=4))
    for shard in range(4):
        assert await env.client.zcard(store.deadline_index(shard)) == 0


async def test_a_batch_arriving_after_the_claim_keeps_the_transaction_open(env: Env) -> None:
    """The sweeper claimed a due deadline, then a batch came: the move re-checks idleness
    inside Redis and does nothing, and the newer deadline stays (not the claim's lease)."""
    clock = FakeClock(time.time())
    policy = BufferPolicy(deadline_shards=1)
    buffering = env.buffering(policy, clock)
    store = env.store(policy)
    transaction = TransactionKey(ORG, SESSION, "txn-reopened")
    first, second = (make_batch("txn-reopened", n) for n in range(2))
    await buffering.accept(ORG, None, first)

    clock.advance(IDLE + 1)
    claimed, lease = await store.claim_due(0, int(clock.now * 1000), 30_000)
    assert claimed == [transaction]
    await buffering.accept(ORG, None, second)  # lands between the claim and the move
    (result,) = await store.move_if_idle(claimed, int(clock.now * 1000))
    assert result.status is MoveStatus.NOT_DUE
    await store.settle_deadlines([(transaction, lease, None)])  # the lease is gone: no-op

    assert await buffering.sweep_once(clock.now + IDLE - 1) == 0
    assert await buffering.sweep_once(clock.now + IDLE + 1) == 1
    published = await env.consume(1)
    _assert_single_segment(published, [first, second], ingest_pb2.FLUSH_REASON_IDLE)


async def test_a_triggered_transaction_leaves_nothing_for_the_sweeper(env: Env) -> None:
    """The stale idle deadline of a flushed transaction is dropped without a second flush."""
    clock = FakeClock(time.time())
    policy = BufferPolicy(deadline_shards=2)
    buffering = env.buffering(policy, clock)
    batches = [make_batch("txn-done", n, trigger=n == 2) for n in range(3)]
    await _accept_all(buffering, batches)

    assert await buffering.sweep_once(clock.now + IDLE + 1) == 0
    published = await env.consume(1)
    _assert_single_segment(published, batches, ingest_pb2.FLUSH_REASON_TRIGGER)
    store = env.store(policy)
    assert [await env.client.zcard(store.deadline_index(s)) for s in range(2)] == [0, 0]
    assert [await env.client.zcard(store.flush_index(s)) for s in range(2)] == [0, 0]


# -- retries -----------------------------------------------------------------------------


async def test_a_retried_batch_is_stored_once_also_after_the_flush(env: Env) -> None:
    """Retries before and after the flush change nothing; the trigger retried flushes nothing."""
    buffering = env.buffering(BufferPolicy())
    first, second, trigger = (make_batch("txn-retry", n, trigger=n == 2) for n in range(3))

    assert (await buffering.accept(ORG, None, first)).buffered_batches == 1
    again = await buffering.accept(ORG, None, first)
    assert again.disposition == ingest_pb2.BATCH_DISPOSITION_DUPLICATE
    assert again.buffered_batches == 1
    # The same batch through two instances at once: one stores it.
    other = env.buffering(BufferPolicy(), own_client=True)
    racing = await asyncio.gather(
        buffering.accept(ORG, None, second), other.accept(ORG, None, second)
    )
    assert sorted(o.disposition for o in racing) == [
        ingest_pb2.BATCH_DISPOSITION_BUFFERED,
        ingest_pb2.BATCH_DISPOSITION_DUPLICATE,
    ]
    flushed = await buffering.accept(ORG, None, trigger)
    assert flushed.disposition == ingest_pb2.BATCH_DISPOSITION_FLUSHED

    for batch in (first, second, trigger):
        outcome = await other.accept(ORG, None, batch)
        assert outcome.disposition == ingest_pb2.BATCH_DISPOSITION_DUPLICATE
        assert outcome.buffered_batches == 0

    published = await env.consume(1, settle=0.5)
    message = _assert_single_segment(
        published, [first, second, trigger], ingest_pb2.FLUSH_REASON_TRIGGER
    )
    assert message.user_id == ""


async def test_a_move_resent_after_a_lost_reply_returns_the_same_segment(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py resends a pipeline whose connection dropped: with the same flush token the
    append-and-move (and a threshold move) hand back the segment already moved, not a
    duplicate and not a second segment, so the caller publishes and finishes it."""
    monkeypatch.setattr(event_buffer, "new_flush_token", lambda: "feedfacefeedface")
    policy = BufferPolicy(max_batches=1, deadline_shards=1)
    store = env.store(policy)
    transaction = TransactionKey(ORG, SESSION, "txn-resent")
    trigger = make_batch("txn-resent", 0, trigger=True)
    data = trigger.SerializeToString()

    async def append_trigger() -> AppendResult:
        return await store.append(
            transaction, trigger.batch_id, frame_batch(data), len(data), 3, 1, 2, "", 1000, 1
        )

    first, resent = await append_trigger(), await append_trigger()
    assert first.moved is not None
    assert resent.moved == first.moved
    await store.finish(first.moved)

    for n in (1, 2):
        batch = make_batch("txn-resent", n).SerializeToString()
        await store.append(transaction, f"batch-{n:06d}", frame_batch(batch), 10, 1, 1, 2, "", 2000)
    moved = await store.move_over_threshold(transaction, 3000)
    moved_again = await store.move_over_threshold(transaction, 3000)
    assert moved.segment is not None
    assert moved_again.segment == moved.segment
    assert moved.segment.segment == 1


async def test_concurrent_requests_after_a_script_cache_flush_are_each_answered_once(
    env: Env,
) -> None:
    """Requests sharing pipelines all hit NOSCRIPT; each is resent once, after the scripts
    are loaded, and each gets its own answer (no batch reported twice or as a duplicate)."""
    buffering = env.buffering(BufferPolicy())
    batches = [make_batch("txn-noscript", n) for n in range(40)]
    await buffering.accept(ORG, None, batches[0])
    await env.client.script_flush()

    outcomes = await asyncio.gather(*(buffering.accept(ORG, None, b) for b in batches[1:]))

    assert {o.disposition for o in outcomes} == {ingest_pb2.BATCH_DISPOSITION_BUFFERED}
    assert sorted(o.buffered_batches for o in outcomes) == list(range(2, 41))


# -- races -------------------------------------------------------------------------------


async def test_two_instances_and_a_sweeper_race_without_a_double_flush(env: Env) -> None:
    """Many transactions at the count bound: both instances push them over it (three new
    batches each, and retries of old ones) while a sweeper sweeps them as idle; each
    transaction is flushed exactly once, and every batch is published exactly once."""
    policy = BufferPolicy(max_batches=5, deadline_shards=4)
    clock = FakeClock(time.time())
    first = env.buffering(policy, clock, own_client=True)
    second = env.buffering(policy, clock, own_client=True)
    transactions = [f"txn-race-{i}" for i in range(40)]
    batches = {txn: [make_batch(txn, n) for n in range(8)] for txn in transactions}

    # Up to the bound, both instances at once (each batch sent by both: a retry storm).
    await asyncio.gather(
        *(
            instance.accept(ORG, None, batch)
            for txn in transactions
            for batch in batches[txn][:5]
            for instance in (first, second)
        )
    )
    # The sweeper sees those five batches as idle, and any batch sent from now on as fresh:
    # it may flush a transaction only before the instances' next batch reaches it.
    start = clock.now
    sweeper = env.buffering(policy, clock=lambda: start + IDLE + 1, own_client=True)
    clock.advance(IDLE + 10)

    async def sweep_repeatedly() -> int:
        flushed = 0
        for _ in range(5):
            flushed += await sweeper.sweep_once()
        return flushed

    async def send(instance: TransactionBuffering, batch: events_pb2.EventBatch) -> BufferOutcome:
        # Spread the requests so that the sweeper gets to some transactions first.
        await asyncio.sleep(random.uniform(0, 0.05))
        return await instance.accept(ORG, None, batch)

    results = await asyncio.gather(
        sweep_repeatedly(),
        *(
            send(instance, batches[txn][n])
            for txn in transactions
            for instance, numbers in ((first, (5, 7, 0)), (second, (6, 1)))
            for n in numbers
        ),
    )
    published = await env.consume(len(transactions))
    for topic in COMPILED_TOPICS:
        identities = Counter(p.identity for p in _by_topic(published, topic))
        assert set(identities) == {(ORG, txn, 0) for txn in transactions}, identities
        assert set(identities.values()) == {1}
    assert {o.disposition for o in results[1:] if isinstance(o, BufferOutcome)} <= {
        ingest_pb2.BATCH_DISPOSITION_BUFFERED,
        ingest_pb2.BATCH_DISPOSITION_FLUSHED,
        ingest_pb2.BATCH_DISPOSITION_DUPLICATE,
    }

    # What was left buffered flushes later; every batch is published exactly once.
    await sweeper.sweep_once(clock.now + 2 * IDLE)
    everything = Counter(b.batch_id for txn in transactions for b in batches[txn])

    def all_batches_seen(out: list[Published]) -> bool:
        seen = {batch_id for p in out for batch_id in _batch_ids(p.message)}
        return seen == set(everything)

    published = await env.consume(len(transactions), settle=1.0, until=all_batches_seen)
    for topic in COMPILED_TOPICS:
        messages = _by_topic(published, topic)
        assert len({p.identity for p in messages}) == len(messages)
        stored = Counter(batch_id for p in messages for batch_id in _batch_ids(p.message))
        assert stored == everything
        for p in messages:
            assert p.message.batch_count == len(p.message.batches) > 0


async def test_racing_sweepers_flush_each_idle_transaction_once(env: Env) -> None:
    """Three sweepers on the same due transactions: one flush each, counted once."""
    policy = BufferPolicy(deadline_shards=4)
    instances = [env.buffering(policy, own_client=True) for _ in range(3)]
    transactions = [f"txn-idle-race-{i}" for i in range(60)]
    await asyncio.gather(
        *(
            instances[n % 2].accept(ORG, None, make_batch(txn, n))
            for txn in transactions
            for n in range(3)
        )
    )
    later = time.time() + IDLE + 1
    counts = await asyncio.gather(*(instance.sweep_once(later) for instance in instances))
    assert sum(counts) == len(transactions)

    published = await env.consume(len(transactions))
    for topic in COMPILED_TOPICS:
        messages = _by_topic(published, topic)
        assert sorted(p.identity for p in messages) == sorted((ORG, t, 0) for t in transactions)
        assert all(len(p.message.batches) == 3 for p in messages)


# -- crashes -----------------------------------------------------------------------------


async def test_a_flush_killed_between_move_and_publish_is_recovered_once(env: Env) -> None:
    """A segment moved to flushing by a process that then died is re-published once, as
    it was (same segment, reason and bytes), after stale_flush_after."""
    policy = BufferPolicy(deadline_shards=2, stale_flush_after=timedelta(seconds=30))
    doomed = env.store(policy, own_client=True)
    batches = [make_batch("txn-crash", n) for n in range(3)]
    await _accept_all(env.buffering(policy), batches)
    moved_at = time.time() + IDLE + 1
    (moved,) = await doomed.move_if_idle(
        [TransactionKey(ORG, SESSION, "txn-crash")], int(moved_at * 1000)
    )
    assert moved.segment is not None
    del doomed  # the process dies here: nothing published, nothing deleted

    survivor = env.buffering(policy, own_client=True)
    assert await survivor.recover_stale(moved_at + 29) == 0  # not stale yet
    assert await survivor.recover_stale(moved_at + 31) == 1
    assert await survivor.recover_stale(moved_at + 100) == 0
    assert await survivor.sweep_once(moved_at + 2 * IDLE) == 0  # the buffer is gone

    published = await env.consume(1, settle=0.5)
    message = _assert_single_segment(published, batches, ingest_pb2.FLUSH_REASON_IDLE)
    assert message.segment == 0
    assert message.compiled_at.ToMilliseconds() == int(moved_at * 1000)
    assert all(p.headers["rased-redelivery"] == b"recovery" for p in published)


async def test_a_flush_killed_after_publishing_is_republished_byte_for_byte(env: Env) -> None:
    """A crash between publish and delete: recovery sends the identical message again, so
    consumers' dedup on (org, txn, segment) sees the same content twice."""
    policy = BufferPolicy(deadline_shards=2)
    doomed = env.store(policy)
    batches = [make_batch("txn-twice", n) for n in range(2)]
    await _accept_all(env.buffering(policy), batches)
    now = time.time() + IDLE + 1
    (moved,) = await doomed.move_if_idle(
        [TransactionKey(ORG, SESSION, "txn-twice")], int(now * 1000)
    )
    assert moved.segment is not None
    await env.bus.publish_compiled_payload(ORG, "txn-twice", compile_segment(moved.segment))

    assert await env.buffering(policy).recover_stale(now + 60) == 1
    published = await env.consume(2)
    for topic in COMPILED_TOPICS:
        copies = _by_topic(published, topic)
        assert len(copies) == 2
        assert copies[0].value == copies[1].value
        assert list(copies[0].message.batches) == batches


def _wait_until(condition: Callable[[], bool], limit_s: float = 15.0) -> None:
    """Block (in a worker thread) until the condition holds or the limit passes."""
    deadline = time.monotonic() + limit_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


async def _restart(server: ManagedServer, pid: int, crash: bool) -> None:
    """Stop (SIGTERM) or kill (SIGKILL) the server and start it again, whatever happens."""
    try:
        if crash:
            os.killpg(pid, signal.SIGKILL)
            await asyncio.to_thread(_wait_until, lambda: not pid_is_alive(pid))
        else:
            await asyncio.to_thread(server.stop, _progress)
    finally:
        # A forked AOF rewrite child of the same group may hold the port a moment longer.
        host, port = server.settings.host, server.settings.redis_port
        await asyncio.to_thread(_wait_until, lambda: port_is_free(host, port))
        await asyncio.to_thread(server.start, _progress)
        await server.wait_ready(_progress)


@pytest.mark.parametrize("crash", [False, True], ids=["stop", "sigkill"])
async def test_batches_buffered_before_a_redis_restart_are_all_flushed(
    env: Env, redis_server: ManagedServer, crash: bool
) -> None:
    """The append-only file keeps buffered batches, dedup ids and deadlines across a restart
    (a SIGTERM stop fsyncs it; after SIGKILL, acknowledged writes are in the OS already)."""
    pid = redis_server.pid()
    if pid is None:
        pytest.skip("this Redis was not started by this checkout's stack; cannot restart it")
    policy = BufferPolicy(deadline_shards=4)
    buffering = env.buffering(policy)
    batches = {txn: [make_batch(txn, n) for n in range(4)] for txn in ("txn-a", "txn-b")}
    for txn_batches in batches.values():
        await _accept_all(buffering, txn_batches)

    await _restart(redis_server, pid, crash)

    # Dedup survived; the scripts are reloaded transparently (NOSCRIPT after a restart).
    retry = await buffering.accept(ORG, None, batches["txn-a"][0])
    assert retry.disposition == ingest_pb2.BATCH_DISPOSITION_DUPLICATE
    assert retry.buffered_batches == 4
    assert await buffering.sweep_once(time.time() + IDLE + 1) == 2

    published = await env.consume(2)
    for topic in COMPILED_TOPICS:
        by_txn = {p.message.transaction_id: p.message for p in _by_topic(published, topic)}
        assert {txn: list(m.batches) for txn, m in by_txn.items()} == batches


# -- shutdown ----------------------------------------------------------------------------


class SlowPublisher:
    """Delays every publication, to cancel a request in the middle of one."""

    def __init__(self, bus: KafkaEventBus, delay: float) -> None:
        self.bus = bus
        self.delay = delay
        self.started = asyncio.Event()

    async def publish_compiled_payload(
        self,
        organization_id: str,
        transaction_id: str,
        payload: bytes,
        *,
        redelivery: bool = False,
    ) -> None:
        self.started.set()
        await asyncio.sleep(self.delay)
        await self.bus.publish_compiled_payload(
            organization_id, transaction_id, payload, redelivery=redelivery
        )


async def test_a_cancelled_request_does_not_cut_its_flush_in_half(env: Env) -> None:
    """Cancelling accept() mid-publication: the flush completes and drain() waits for it."""
    policy = BufferPolicy(deadline_shards=2)
    publisher = SlowPublisher(env.bus, 0.3)
    buffering = TransactionBuffering(env.store(policy), publisher, policy)
    batches = [make_batch("txn-cancel", n, trigger=n == 1) for n in range(2)]
    await buffering.accept(ORG, None, batches[0])
    request = asyncio.create_task(buffering.accept(ORG, None, batches[1]))
    await publisher.started.wait()
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    await buffering.drain()

    published = await env.consume(1)
    _assert_single_segment(published, batches, ingest_pb2.FLUSH_REASON_TRIGGER)
    store = env.store(policy)
    keys = store.transaction_keys(TransactionKey(ORG, SESSION, "txn-cancel"))
    assert await env.client.hlen(keys[5]) == 0  # flushing: deleted after the publication


async def test_the_sweeper_loop_flushes_and_stops_when_told(env: Env) -> None:
    """run() sweeps every interval on its clock and returns promptly once stop is set."""
    policy = BufferPolicy(deadline_shards=2, sweep_interval=timedelta(milliseconds=50))
    ingest = env.buffering(policy)
    batches = [make_batch("txn-loop", n) for n in range(2)]
    await _accept_all(ingest, batches)
    sweeper = env.buffering(policy, clock=lambda: time.time() + IDLE + 1)
    stop = asyncio.Event()
    loop = asyncio.create_task(sweeper.run(stop))

    published = await env.consume(1, settle=0)
    stop.set()
    await asyncio.wait_for(loop, timeout=2)
    _assert_single_segment(published, batches, ingest_pb2.FLUSH_REASON_IDLE)


# -- rejections --------------------------------------------------------------------------


async def test_a_rejection_is_published_to_rejected_events(env: Env) -> None:
    """publish_rejected returns once rejected_events holds the message, with its headers."""
    rejected = pipeline_pb2.RejectedBatch(
        organization_id=ORG,
        session_id=SESSION,
        transaction_id="txn-bad",
        batch_id="batch-bad-1",
        event_index=-1,
        stage=pipeline_pb2.REJECTION_STAGE_VALIDATION,
        reason="events[0].pointer.x: must be finite",
        field_paths=["events[0].pointer.x"],
        raw=b"\x0a\x03bad",
    )
    set_correlation_id("corr-rejected")
    await env.bus.publish_rejected(rejected)

    consumer = AIOKafkaConsumer(
        env.topics.topic_name(Topic.REJECTED_EVENTS),
        bootstrap_servers=env.bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        async with asyncio.timeout(10):
            record = await consumer.getone()
    finally:
        await consumer.stop()
    assert pipeline_pb2.RejectedBatch.FromString(record.value) == rejected
    assert record.key == f"{ORG}:txn-bad".encode()
    headers = dict(record.headers)
    assert headers["schema"] == b"rased.v1.RejectedBatch"
    assert headers["content-type"] == b"application/x-protobuf"
    assert headers["correlation-id"] == b"corr-rejected"
