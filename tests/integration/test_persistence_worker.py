"""The persistence worker on real Kafka, Cassandra and PostgreSQL.

The module migrates a keyspace and a PostgreSQL database of its own once; every test has
its own organization, its own topics (a topic prefix) and its own consumer group, and reads
what the worker wrote back from Cassandra.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from cassandra.cluster import Session
from pydantic import SecretStr

from rased.adapters.cassandra.data_keys import CassandraDataKeys
from rased.adapters.cassandra.event_store import CassandraEventStore
from rased.adapters.cassandra.session import cassandra_session, execute
from rased.adapters.kafka.event_bus import KafkaEventBus
from rased.adapters.kafka.topics import KafkaTopicSettings, Topic, ensure_topics
from rased.adapters.postgres.keys import OrganizationStore
from rased.adapters.postgres.retention import PostgresRetention
from rased.common.backoff import Backoff
from rased.common.crypto import Keyring, MasterKeyring, SealError, generate_key, key_spec_entry
from rased.devstack.base import ManagedServer
from rased.devstack.cassandra import CassandraServer
from rased.services.persistence.consuming import persistence_loop
from rased.services.persistence.main import build_consumer, build_server
from rased.services.persistence.persisting import TransactionPersister
from rased.services.persistence.rows import payload_associated_data
from rased.services.persistence.settings import PersistenceSettings
from rased.v1 import events_pb2, pipeline_pb2

pytestmark = pytest.mark.timeout(90)

RETENTION_DAYS = 7
MASTER_1 = key_spec_entry("m1", generate_key())
MASTER_2 = key_spec_entry("m2", generate_key())
SELECT_EVENTS = (
    "SELECT event_time_ms, sequence, session_id, event_type, key_id, payload, ingested_at, "
    "TTL(payload) AS ttl FROM events WHERE organization_id = %s AND transaction_id = %s"
)


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float) -> None:
    """Wait until `check` says yes; fail the test after `seconds`."""
    async with asyncio.timeout(seconds):
        while True:
            if await check():
                return
            await asyncio.sleep(0.1)


@dataclass
class Env:
    """What a test needs: its organization, topics, settings and a session on the keyspace."""

    organization_id: str
    topics: KafkaTopicSettings
    settings: PersistenceSettings
    session: Session
    pool: asyncpg.Pool
    bus: KafkaEventBus
    cassandra: CassandraServer

    def with_settings(self, **changes: Any) -> PersistenceSettings:
        return self.settings.model_copy(update=changes)

    async def rows(self, transaction_id: str) -> list[Any]:
        return await execute(self.session, SELECT_EVENTS, (self.organization_id, transaction_id))

    async def wait_rows(self, transaction_id: str, count: int, seconds: float = 20) -> list[Any]:
        async def enough() -> bool:
            return len(await self.rows(transaction_id)) >= count

        await eventually(enough, seconds)
        return await self.rows(transaction_id)

    async def committed(self) -> int:
        """Sum of the group's committed offsets over the data_persistence partitions."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(self.settings.consumer_group)
        finally:
            await admin.close()
        return sum(meta.offset for meta in offsets.values() if meta.offset > 0)

    async def wait_committed(self, total: int, seconds: float = 20) -> None:
        async def reached() -> bool:
            return await self.committed() >= total

        await eventually(reached, seconds)

    async def keyring(self, master_spec: str = MASTER_1) -> Keyring:
        keys = CassandraDataKeys(self.session, MasterKeyring.from_spec(master_spec), 0)
        return await keys.keyring(self.organization_id)

    def persister(self, master_spec: str, store: CassandraEventStore) -> TransactionPersister:
        return TransactionPersister(
            store,
            CassandraDataKeys(self.session, MasterKeyring.from_spec(master_spec), 0),
            PostgresRetention(self.pool, 90),
        )


@pytest.fixture
async def env(
    module_keyspace: str,
    module_database: str,
    cassandra_server: ManagedServer,
    kafka_server: ManagedServer,
) -> AsyncIterator[Env]:
    assert isinstance(cassandra_server, CassandraServer)
    stack = cassandra_server.settings
    bootstrap = f"{stack.host}:{stack.kafka_port}"
    tag = uuid.uuid4().hex[:10]
    topics = KafkaTopicSettings(
        prefix=f"t{tag}-",
        ai_processing_partitions=1,
        data_persistence_partitions=2,
        client_notification_partitions=1,
        rejected_events_partitions=1,
    )
    async with AsyncExitStack() as stack_:
        await ensure_topics(bootstrap, topics)
        pool = await asyncpg.create_pool(module_database, min_size=1, max_size=2)
        stack_.push_async_callback(pool.close)
        org = await OrganizationStore(pool).create(f"bank-{tag}", retention_days=RETENTION_DAYS)
        session = await stack_.enter_async_context(
            cassandra_session([stack.host], stack.cassandra_port, module_keyspace)
        )
        bus = KafkaEventBus(bootstrap, topics)
        await bus.start()
        stack_.push_async_callback(bus.close)
        settings = PersistenceSettings(
            grpc_port=0,
            kafka_bootstrap_servers=bootstrap,
            consumer_group=f"persist-{tag}",
            cassandra_contact_points=[stack.host],
            cassandra_port=stack.cassandra_port,
            cassandra_keyspace=module_keyspace,
            cassandra_request_timeout=timedelta(seconds=3),
            cassandra_max_reconnect_delay=timedelta(milliseconds=500),
            postgres_dsn=module_database,
            master_keys=SecretStr(MASTER_1),
            retry_initial_backoff=timedelta(milliseconds=100),
            retry_max_backoff=timedelta(milliseconds=500),
            shutdown_drain=timedelta(0),
            shutdown_grace=timedelta(seconds=5),
        )
        yield Env(org, topics, settings, session, pool, bus, cassandra_server)


def compiled_transaction(
    organization_id: str, transaction_id: str, *, segment: int = 0, marker: str = "field-x"
) -> pipeline_pb2.CompiledTransaction:
    """Two batches: pointer moves, then a keystroke (its field id is the plaintext marker)."""
    start = 1_764_000_000_000
    compiled = pipeline_pb2.CompiledTransaction(
        organization_id=organization_id,
        session_id="sess-" + transaction_id,
        transaction_id=transaction_id,
        segment=segment,
        batch_count=2,
        event_count=4,
        first_event_ms=start,
        last_event_ms=start + 10,
    )
    first = compiled.batches.add(batch_id="b1", session_id=compiled.session_id, sequence=0)
    for index in range(3):
        first.events.add(
            # The first two share a millisecond: the sequence tells them apart.
            timestamp_ms=start + index // 2,
            pointer=events_pb2.PointerEvent(
                action=events_pb2.POINTER_ACTION_MOVE, x=float(index), y=2.0
            ),
        )
    second = compiled.batches.add(batch_id="b2", session_id=compiled.session_id, sequence=1)
    second.events.add(
        timestamp_ms=start + 10,
        keystroke=events_pb2.KeystrokeEvent(
            action=events_pb2.KEY_ACTION_DOWN, key_class=events_pb2.KEY_CLASS_DIGIT, field_id=marker
        ),
    )
    compiled.compiled_at.FromMilliseconds(start + 20)
    return compiled


def decrypt_events(env: Env, keyring: Keyring, transaction_id: str, rows: list[Any]) -> list[Any]:
    return [
        events_pb2.Event.FromString(
            keyring.open(
                row.payload,
                payload_associated_data(
                    env.organization_id, transaction_id, row.event_time_ms, row.sequence
                ),
            )
        )
        for row in rows
    ]


async def running_worker(env: Env, settings: PersistenceSettings | None = None) -> Any:
    server = await build_server(settings or env.settings, env.topics)
    await server.start()
    return server


def commitlog_holds(cassandra: CassandraServer, needle: bytes) -> bool:
    """Tell whether any commit-log segment on disk contains the bytes."""
    folder = Path(cassandra.storage_dir) / "commitlog"
    return any(needle in path.read_bytes() for path in folder.glob("*.log"))


async def test_a_compiled_transaction_becomes_encrypted_expiring_rows(env: Env) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    compiled = compiled_transaction(env.organization_id, "txn-1", marker=marker)
    server = await running_worker(env)
    try:
        await env.bus.publish_compiled(compiled)
        rows = await env.wait_rows("txn-1", 4)
        await env.wait_committed(1)
    finally:
        await server.shutdown()

    keyring = await env.keyring()
    events = decrypt_events(env, keyring, "txn-1", rows)
    originals = [event for batch in compiled.batches for event in batch.events]
    assert events == originals  # time order, ties kept in compiled order by the sequence
    assert [row.event_type for row in rows] == ["pointer"] * 3 + ["keystroke"]
    assert [row.sequence for row in rows] == [0, 1, 2, 3]
    assert {row.key_id for row in rows} == {keyring.primary_key_id}
    assert {row.session_id for row in rows} == {"sess-txn-1"}
    week = RETENTION_DAYS * 24 * 3600
    assert all(week - 120 < row.ttl <= week for row in rows)

    # A payload copied onto another row does not open: the AAD binds it to its row.
    with pytest.raises(SealError):
        keyring.open(
            rows[0].payload,
            payload_associated_data(
                env.organization_id, "txn-1", rows[1].event_time_ms, rows[1].sequence
            ),
        )
    # Nothing of the event is readable as stored, neither the column nor the commit log
    # on disk, while the plaintext session id of the same rows is there (the check works).
    assert all(marker.encode() not in row.payload for row in rows)
    assert commitlog_holds(env.cassandra, b"sess-txn-1")
    assert not commitlog_holds(env.cassandra, marker.encode())

    listings = await execute(
        env.session,
        "SELECT day, session_id, TTL(session_id) AS ttl FROM transactions_by_day "
        "WHERE organization_id = %s AND day = '2025-11-24'",
        (env.organization_id,),
    )
    assert [(str(r.day), r.session_id) for r in listings] == [("2025-11-24", "sess-txn-1")]
    assert week - 120 < listings[0].ttl <= week
    by_session = await execute(
        env.session,
        "SELECT transaction_id, TTL(ingested_at) AS ttl FROM transactions_by_session "
        "WHERE organization_id = %s AND session_id = %s",
        (env.organization_id, "sess-txn-1"),
    )
    assert [r.transaction_id for r in by_session] == ["txn-1"]
    assert week - 120 < by_session[0].ttl <= week


async def test_the_same_message_twice_leaves_one_set_of_rows(env: Env) -> None:
    compiled = compiled_transaction(env.organization_id, "txn-2")
    second_segment = compiled_transaction(env.organization_id, "txn-2", segment=1)
    server = await running_worker(env)
    try:
        await env.bus.publish_compiled(compiled)
        await env.bus.publish_compiled(compiled, redelivery=True)
        await env.bus.publish_compiled(second_segment)
        await env.wait_committed(3)
    finally:
        await server.shutdown()
    rows = await env.rows("txn-2")
    # Two segments of four events each; the redelivered first segment added nothing.
    assert len(rows) == 8
    assert sorted(row.sequence for row in rows) == [
        0,
        1,
        2,
        3,
        1 << 20,
        (1 << 20) + 1,
        (1 << 20) + 2,
        (1 << 20) + 3,
    ]
    listed = await execute(
        env.session,
        "SELECT transaction_id FROM transactions_by_session "
        "WHERE organization_id = %s AND session_id = %s",
        (env.organization_id, "sess-txn-2"),
    )
    assert len(listed) == 1


async def test_a_worker_stopped_before_committing_rewrites_after_restart(env: Env) -> None:
    compiled = compiled_transaction(env.organization_id, "txn-3")
    await env.bus.publish_compiled(compiled)

    # First worker: writes the rows, then "crashes" before committing (leaves the group).
    async with cassandra_session(
        env.settings.cassandra_contact_points, env.settings.cassandra_port, env.session.keyspace
    ) as session:
        store = await CassandraEventStore.prepare(session)
        consumer = build_consumer(env.settings, env.topics)
        await consumer.start()
        try:
            loop = persistence_loop(consumer, env.persister(MASTER_1, store), Backoff(0.1, 0.5))
            offsets: dict[Any, int] = {}
            async with asyncio.timeout(20):
                while not offsets:
                    offsets = await loop.poll_and_handle()
        finally:
            await consumer.stop()  # no commit
    first = await env.rows("txn-3")
    assert len(first) == 4
    assert await env.committed() == 0

    server = await running_worker(env)
    try:
        await env.wait_committed(1)
    finally:
        await server.shutdown()
    again = await env.rows("txn-3")
    assert len(again) == 4  # the same rows, rewritten
    assert [r.sequence for r in again] == [r.sequence for r in first]
    # Re-processed indeed: the rows were written a second time.
    assert all(b.ingested_at > a.ingested_at for a, b in zip(first, again, strict=True))


async def test_data_keys_survive_master_key_rotation(env: Env) -> None:
    async with cassandra_session(
        env.settings.cassandra_contact_points, env.settings.cassandra_port, env.session.keyspace
    ) as session:
        store = await CassandraEventStore.prepare(session)
        await env.persister(MASTER_1, store).persist(
            compiled_transaction(env.organization_id, "txn-old")
        )
        both = f"{MASTER_1},{MASTER_2}"
        # The new master key seals from now on; the data key is rewrapped under it.
        rotated = CassandraDataKeys(session, MasterKeyring.from_spec(both), 0)
        assert await rotated.rewrap(env.organization_id) == 1
        wrapped = await execute(
            session,
            "SELECT master_key_id FROM data_keys WHERE organization_id = %s",
            (env.organization_id,),
        )
        assert [r.master_key_id for r in wrapped] == ["m2"]
        # A new data key too: new rows under it, old rows under the first.
        new_key = await rotated.rotate(env.organization_id)
        await env.persister(both, store).persist(
            compiled_transaction(env.organization_id, "txn-new")
        )

    # With only the new master key configured, every row still opens.
    keyring = await env.keyring(MASTER_2)
    old_rows, new_rows = await env.rows("txn-old"), await env.rows("txn-new")
    assert {r.key_id for r in old_rows} == {"dk1"} and {r.key_id for r in new_rows} == {new_key}
    assert len(decrypt_events(env, keyring, "txn-old", old_rows)) == 4
    assert len(decrypt_events(env, keyring, "txn-new", new_rows)) == 4
    # The retired master key alone cannot open the rewrapped data keys any more.
    with pytest.raises(Exception, match="cannot be unwrapped"):
        await env.keyring(MASTER_1)


class _Proxy:
    """A TCP relay in front of Cassandra that the test can cut and restore (a network outage)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


async def test_cassandra_unreachable_mid_stream_loses_nothing(env: Env) -> None:
    proxy = _Proxy((env.settings.cassandra_contact_points[0], env.settings.cassandra_port))
    await proxy.start()
    server = await running_worker(env, env.with_settings(cassandra_port=proxy.port))
    try:
        await env.bus.publish_compiled(compiled_transaction(env.organization_id, "txn-a"))
        await env.wait_rows("txn-a", 4)
        await env.wait_committed(1)

        await proxy.cut()  # the worker's connections drop and reconnecting fails
        await env.bus.publish_compiled(compiled_transaction(env.organization_id, "txn-b"))
        await asyncio.sleep(2)
        assert await env.rows("txn-b") == []
        assert await env.committed() == 1  # nothing committed before it is written

        await proxy.start()  # the same port again: the node is back
        await env.wait_rows("txn-b", 4, seconds=30)
        await env.wait_committed(2, seconds=30)
    finally:
        await server.shutdown()
        await proxy.cut()


async def test_a_message_that_can_never_be_stored_is_skipped_not_blocking(env: Env) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=env.settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        # Both on partition 0, garbage first: the good one behind it must still be stored.
        topic = env.topics.topic_name(Topic.DATA_PERSISTENCE)
        await producer.send_and_wait(topic, b"\xff not a protobuf", partition=0)
        good = compiled_transaction(env.organization_id, "txn-after-garbage")
        await producer.send_and_wait(topic, good.SerializeToString(), partition=0)
    finally:
        await producer.stop()
    server = await running_worker(env)
    try:
        rows = await env.wait_rows("txn-after-garbage", 4)
        await env.wait_committed(2)
    finally:
        await server.shutdown()
    assert len(rows) == 4
