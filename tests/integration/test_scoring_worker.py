"""The scoring worker on real Kafka, PostgreSQL, Redis and a Triton of its own.

The module starts its own Triton (the repository's models, on free ports) and migrates a
database of its own; every test has its own organization, topics (a topic prefix),
consumer group and Redis key prefix. Triton being away is a worker pointed at a port where
nothing listens, then at the live one.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from rased.adapters.kafka.event_bus import KafkaEventBus
from rased.adapters.kafka.topics import KafkaTopicSettings, Topic, ensure_topics
from rased.adapters.postgres.keys import OrganizationStore
from rased.adapters.postgres.results import PostgresResultStore
from rased.adapters.redis.profiles import RedisProfileStore
from rased.devstack.base import ManagedServer
from rased.devstack.settings import StackSettings, repository_root
from rased.devstack.triton import TritonServer
from rased.scoring.profile import UserProfile
from rased.services.scoring.breaker import BreakerState
from rased.services.scoring.main import ScoringWorker, build_worker
from rased.services.scoring.settings import ScoringSettings
from rased.training import synthetic_sessions
from rased.v1 import events_pb2, pipeline_pb2, scoring_pb2

pytestmark = pytest.mark.timeout(90)

MODEL_VERSION = "bot_detection:1+session_scores:1+rules:2"
HUMAN_CSV = repository_root() / "model_repository" / "bot_detection" / "smoke_human_session.csv"
T0 = 1_764_000_000_000
_ACTIONS = {
    "Move": events_pb2.POINTER_ACTION_MOVE,
    "Pressed": events_pb2.POINTER_ACTION_DOWN,
    "Released": events_pb2.POINTER_ACTION_UP,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _progress(message: str) -> None:
    print(f"[triton] {message}", flush=True)


@pytest.fixture(scope="module")
def triton_url() -> Iterator[str]:
    """A Triton of this module's own on free ports (the shared one is left alone)."""
    with tempfile.TemporaryDirectory(prefix="rased-triton-") as state:
        settings = StackSettings(
            state_dir=Path(state),
            triton_http_port=free_port(),
            triton_grpc_port=free_port(),
            triton_metrics_port=free_port(),
        )
        server = TritonServer(settings)
        server.install(_progress)
        server.prepare(_progress)
        server.start(_progress)
        try:
            asyncio.run(server.wait_ready(_progress))
            yield f"{settings.host}:{settings.triton_grpc_port}"
        finally:
            server.stop(_progress)


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float) -> None:
    """Wait until `check` says yes; fail the test after `seconds`."""
    async with asyncio.timeout(seconds):
        while True:
            if await check():
                return
            await asyncio.sleep(0.1)


@dataclass
class Env:
    """A test's organization, topics, settings and clients."""

    organization_id: str
    topics: KafkaTopicSettings
    settings: ScoringSettings
    bus: KafkaEventBus
    store: PostgresResultStore
    pool: asyncpg.Pool
    profiles: RedisProfileStore

    async def worker(self, **changes: Any) -> ScoringWorker:
        worker = await build_worker(self.settings.model_copy(update=changes), self.topics)
        await worker.server.start()
        return worker

    async def result(self, txn: str, seconds: float = 20) -> scoring_pb2.TransactionResult:
        found: list[scoring_pb2.TransactionResult] = []

        async def stored() -> bool:
            result = await self.store.get(self.organization_id, txn, 0)
            found[:] = [result] if result else []
            return bool(found)

        await eventually(stored, seconds)
        return found[0]

    async def rows(self, txn: str) -> int:
        return int(
            await self.pool.fetchval(
                "SELECT count(*) FROM results WHERE organization_id = $1 AND transaction_id = $2",
                uuid.UUID(self.organization_id),
                txn,
            )
        )

    async def committed(self) -> int:
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

    async def notifications(self, count: int, seconds: float = 10) -> list[Any]:
        """Read client_notification from the start until `count` messages (then a bit more)."""
        consumer = AIOKafkaConsumer(
            self.topics.topic_name(Topic.CLIENT_NOTIFICATION),
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        messages: list[Any] = []
        try:
            async with asyncio.timeout(seconds):
                while len(messages) < count:
                    polled = await consumer.getmany(timeout_ms=200)
                    messages.extend(r for batch in polled.values() for r in batch)
            # Anything beyond `count` would be a duplicate announcement: look once more.
            polled = await consumer.getmany(timeout_ms=500)
            messages.extend(r for batch in polled.values() for r in batch)
        finally:
            await consumer.stop()
        return messages


@pytest.fixture
async def env(
    module_database: str,
    triton_url: str,
    redis_server: ManagedServer,
    kafka_server: ManagedServer,
) -> AsyncIterator[Env]:
    stack = kafka_server.settings
    bootstrap = f"{stack.host}:{stack.kafka_port}"
    redis_url = f"redis://{stack.host}:{stack.redis_port}/0"
    tag = uuid.uuid4().hex[:10]
    topics = KafkaTopicSettings(
        prefix=f"t{tag}-",
        ai_processing_partitions=1,
        data_persistence_partitions=1,
        client_notification_partitions=1,
        rejected_events_partitions=1,
    )
    async with AsyncExitStack() as resources:
        await ensure_topics(bootstrap, topics)
        pool = await asyncpg.create_pool(module_database, min_size=1, max_size=2)
        resources.push_async_callback(pool.close)
        org = await OrganizationStore(pool).create(f"bank-{tag}")
        bus = KafkaEventBus(bootstrap, topics)
        await bus.start()
        resources.push_async_callback(bus.close)
        redis = aioredis.Redis.from_url(redis_url)
        resources.push_async_callback(redis.aclose)
        prefix = f"test-scoring-{tag}:"

        async def forget_profiles() -> None:
            keys = [key async for key in redis.scan_iter(match=prefix + "*")]
            if keys:
                await redis.delete(*keys)

        resources.push_async_callback(forget_profiles)
        settings = ScoringSettings(
            grpc_port=0,
            kafka_bootstrap_servers=bootstrap,
            consumer_group=f"scoring-{tag}",
            postgres_dsn=module_database,
            redis_url=redis_url,
            redis_key_prefix=prefix,
            triton_url=triton_url,
            triton_timeout=timedelta(seconds=5),
            breaker_failure_threshold=2,
            breaker_reset_timeout=timedelta(milliseconds=300),
            retry_initial_backoff=timedelta(milliseconds=100),
            retry_max_backoff=timedelta(milliseconds=300),
            shutdown_drain=timedelta(0),
            shutdown_grace=timedelta(seconds=5),
        )
        yield Env(
            org,
            topics,
            settings,
            bus,
            PostgresResultStore(pool),
            pool,
            RedisProfileStore(redis, prefix),
        )


def compiled_transaction(
    organization_id: str,
    transaction_id: str,
    pointer: list[tuple[float, int, float, float]],
    *,
    user_id: str = "user-1",
) -> pipeline_pb2.CompiledTransaction:
    """A transaction with its pointer events (t_ms, action, x, y), a device and a place."""
    compiled = pipeline_pb2.CompiledTransaction(
        organization_id=organization_id,
        session_id=f"sess-{transaction_id}",
        transaction_id=transaction_id,
        user_id=user_id,
        batch_count=1,
        event_count=len(pointer) + 2,
    )
    batch = compiled.batches.add(batch_id="b-000001", session_id=compiled.session_id)
    batch.events.add(
        timestamp_ms=T0, device=events_pb2.DeviceInfo(fingerprint_hash="a1b2c3", platform="Linux")
    )
    batch.events.add(
        timestamp_ms=T0,
        location=events_pb2.LocationInfo(latitude=24.7, longitude=46.7, country_code="SA"),
    )
    for t, action, x, y in pointer:
        batch.events.add(
            timestamp_ms=T0 + round(t),
            pointer=events_pb2.PointerEvent(
                action=events_pb2.PointerAction.ValueType(action), x=x, y=y
            ),
        )
    return compiled


def human_pointer() -> list[tuple[float, int, float, float]]:
    """A person drawing a circle (a DELBOT-Mouse session)."""
    with HUMAN_CSV.open() as handle:
        rows = csv.DictReader(line for line in handle if not line.startswith("#"))
        return [
            (float(r["t_ms"]), _ACTIONS[r["event"]], float(r["x"]), float(r["y"])) for r in rows
        ]


def bot_pointer() -> list[tuple[float, int, float, float]]:
    """A script: a straight line at constant speed, one event every 10 ms exactly."""
    steps = np.arange(100)
    return [
        (10.0 * i, int(events_pb2.POINTER_ACTION_MOVE), 100.0 + 4.0 * i, 200.0 + 2.0 * i)
        for i in steps
    ]


async def test_a_compiled_transaction_becomes_one_result_and_one_notification(env: Env) -> None:
    worker = await env.worker()
    try:
        await env.bus.publish_compiled(
            compiled_transaction(env.organization_id, "txn-1", human_pointer())
        )
        result = await env.result("txn-1")
        await env.wait_committed(1)
    finally:
        await worker.server.shutdown()

    assert result.model_version == MODEL_VERSION
    assert not result.degraded
    assert result.risk_level != scoring_pb2.RISK_LEVEL_UNSPECIFIED
    assert result.recommendations
    assert result.user_id == "user-1"
    scores = result.scores
    for name in scoring_pb2.Scores.DESCRIPTOR.fields_by_name:
        assert 0.0 <= getattr(scores, name) <= 1.0
    # A first session drawing a circle, from a device and place the profile will learn:
    # nothing anomalous, and the model is sure of its verdict.
    assert result.risk_level == scoring_pb2.RISK_LEVEL_LOW
    assert list(result.recommendations) == [scoring_pb2.RECOMMENDATION_ALLOW]
    assert not result.reason_codes
    (message,) = await env.notifications(1)
    notification = pipeline_pb2.ResultNotification.FromString(message.value)
    assert notification.event_type == "transaction.scored"
    assert notification.result == result
    assert message.key == f"{env.organization_id}:txn-1".encode()
    # The profile learnt the session afterwards.
    (profile,) = await env.profiles.load([(env.organization_id, "user-1")])
    assert profile is not None
    assert profile.sessions == 1
    assert profile.devices == {"a1b2c3": 1}
    assert profile.countries == {"SA": 1}
    assert profile.habits is not None and profile.habits.count == 1


async def test_the_same_message_twice_leaves_one_row_and_commits(env: Env) -> None:
    compiled = compiled_transaction(env.organization_id, "txn-2", human_pointer())
    worker = await env.worker()
    try:
        await env.bus.publish_compiled(compiled)
        first = await env.result("txn-2")
        await env.bus.publish_compiled(compiled, redelivery=True)
        await env.wait_committed(2)
    finally:
        await worker.server.shutdown()
    assert await env.rows("txn-2") == 1
    # The redelivery re-announces the stored result (its first announcement may have been
    # lost), and the profile counted the session once.
    messages = await env.notifications(2)
    assert [pipeline_pb2.ResultNotification.FromString(m.value).result for m in messages] == [
        first,
        first,
    ]
    (profile,) = await env.profiles.load([(env.organization_id, "user-1")])
    assert profile is not None
    assert profile.sessions == 1


async def test_a_scripted_straight_line_scores_as_a_bot(env: Env) -> None:
    worker = await env.worker()
    try:
        await env.bus.publish_compiled(
            compiled_transaction(env.organization_id, "txn-bot", bot_pointer(), user_id="u-b")
        )
        await env.bus.publish_compiled(
            compiled_transaction(env.organization_id, "txn-human", human_pointer(), user_id="u-h")
        )
        bot, human = await env.result("txn-bot"), await env.result("txn-human")
    finally:
        await worker.server.shutdown()
    assert bot.scores.bot_detection > 0.9
    assert human.scores.bot_detection < 0.5
    assert bot.risk_level > human.risk_level
    assert "POINTER_AUTOMATION" in [reason.code for reason in bot.reason_codes]


async def test_triton_away_commits_nothing_then_the_backlog_is_scored(env: Env) -> None:
    dead = f"127.0.0.1:{free_port()}"
    worker = await env.worker(triton_url=dead, triton_timeout=timedelta(seconds=1))
    try:
        await env.bus.publish_compiled(
            compiled_transaction(env.organization_id, "txn-3", human_pointer())
        )

        async def opened() -> bool:
            return worker.scorer.breaker.state != BreakerState.CLOSED

        await eventually(opened, 20)
        await asyncio.sleep(1)  # a few more rounds: still nothing may be committed
        assert await env.committed() == 0
        assert await env.rows("txn-3") == 0
    finally:
        await worker.server.shutdown()

    worker = await env.worker()  # Triton is back
    try:
        result = await env.result("txn-3")
        await env.wait_committed(1)
    finally:
        await worker.server.shutdown()
    assert not result.degraded
    assert worker.scorer.breaker.state == BreakerState.CLOSED


async def test_triton_away_with_the_fallback_scores_degraded(env: Env) -> None:
    dead = f"127.0.0.1:{free_port()}"
    worker = await env.worker(
        triton_url=dead, triton_timeout=timedelta(seconds=1), degraded_fallback=True
    )
    try:
        await env.bus.publish_compiled(
            compiled_transaction(env.organization_id, "txn-4", bot_pointer())
        )
        result = await env.result("txn-4")
        await env.wait_committed(1)
    finally:
        await worker.server.shutdown()
    assert result.degraded
    assert result.model_version == MODEL_VERSION  # both models answered, in-process
    assert result.scores.bot_detection > 0.9  # the same model, in-process
    assert result.scores.overall_confidence > 0.5
    assert "POINTER_AUTOMATION" in [reason.code for reason in result.reason_codes]


def generated(
    organization_id: str, session: synthetic_sessions.SyntheticSession, user_id: str
) -> pipeline_pb2.CompiledTransaction:
    """A generated session as ingestion would compile it."""
    return pipeline_pb2.CompiledTransaction(
        organization_id=organization_id,
        session_id=session.session_id,
        transaction_id=f"txn-{session.session_id}",
        user_id=user_id,
        batch_count=len(session.batches),
        event_count=sum(len(b.events) for b in session.batches),
        batches=session.batches,
    )


def generated_case(
    person: synthetic_sessions.Person,
    label: str,
    case: str,
    rng: np.random.Generator,
    after: int,
) -> synthetic_sessions.SyntheticSession:
    """The next generated session of `person`'s account with that case, after session
    number `after` (seeded)."""
    for index in range(after + 1, after + 400):
        session = synthetic_sessions.make_session(person, label, index, rng)
        if session.truth.case == case:
            return session
    raise AssertionError(f"no {case} session generated")


HISTORY = 8


def phone_user(seed: int) -> synthetic_sessions.Person:
    """A generated person who uses only their phone (touch: bot_detection's pointer model,
    trained on mouse drawings, has no say; see the model card)."""
    (person,) = synthetic_sessions.make_population(1, seed=seed)
    phones = [device for device in person.devices if device.touch_points]
    assert phones, "the seed's person has no phone"
    return dataclasses.replace(person, devices=(phones[0],))


async def test_a_takeover_scores_high_against_the_profile_and_the_owner_low(env: Env) -> None:
    person = phone_user(23)
    rng = np.random.default_rng(23)
    history = [
        synthetic_sessions.make_session(person, "human", index, rng) for index in range(HISTORY)
    ]
    worker = await env.worker()
    try:
        # The owner's own sessions first: the profile learns them one poll at a time.
        for session in history:
            await env.bus.publish_compiled(generated(env.organization_id, session, "u-own"))
            await env.result(f"txn-{session.session_id}")
        learnt: list[UserProfile | None] = []

        async def profiled() -> bool:
            learnt[:] = await env.profiles.load([(env.organization_id, "u-own")])
            return learnt[0] is not None and learnt[0].sessions == HISTORY

        await eventually(profiled, 10)
        owner = generated_case(person, "human", "owner", rng, after=HISTORY - 1)
        intruder = generated_case(person, "takeover", "takeover", rng, after=HISTORY + 400)
        for session in (owner, intruder):
            await env.bus.publish_compiled(generated(env.organization_id, session, "u-own"))
        mine = await env.result(f"txn-{owner.session_id}")
        theirs = await env.result(f"txn-{intruder.session_id}")
        await env.wait_committed(HISTORY + 2)
        (after,) = await env.profiles.load([(env.organization_id, "u-own")])
    finally:
        await worker.server.shutdown()
    assert mine.risk_level == scoring_pb2.RISK_LEVEL_LOW
    assert max(mine.scores.behavioral_anomaly, mine.scores.location_anomaly) < 0.2
    assert theirs.scores.behavioral_anomaly > 0.7
    assert theirs.scores.location_anomaly > 0.5
    assert theirs.risk_level >= scoring_pb2.RISK_LEVEL_HIGH
    assert scoring_pb2.RECOMMENDATION_NOTIFY_USER in theirs.recommendations
    codes = [reason.code for reason in theirs.reason_codes]
    assert {"FAR_FROM_USUAL_PLACES", "NEW_COUNTRY", "NEW_DEVICE"} & set(codes), codes
    assert all(reason.description and 0 < reason.weight <= 1 for reason in theirs.reason_codes)
    # The owner's session was learnt, the intruder's was not: their device stays unknown.
    assert after is not None and after.sessions == HISTORY + 1
    intruder_device = next(
        e.device.fingerprint_hash
        for b in intruder.batches
        for e in b.events
        if e.WhichOneof("kind") == "device"
    )
    assert intruder_device not in after.devices


async def test_a_message_that_can_never_be_scored_does_not_stop_the_others(env: Env) -> None:
    # An organization that does not exist (e.g. erased since) next to a real one, one poll.
    stranger = compiled_transaction(str(uuid.uuid4()), "txn-lost", human_pointer())
    await env.bus.publish_compiled(stranger)
    await env.bus.publish_compiled(
        compiled_transaction(env.organization_id, "txn-5", human_pointer())
    )
    worker = await env.worker()
    try:
        result = await env.result("txn-5")
        await env.wait_committed(2)
    finally:
        await worker.server.shutdown()
    assert result.transaction_id == "txn-5"
    assert len(await env.notifications(1)) == 1
