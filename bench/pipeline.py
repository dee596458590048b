"""Pipeline throughput and latency against the clients' own fastest patterns (`make bench`).

Three figures, each measured against a baseline in the same run, in alternating rounds,
medians shown:

1. persistence: event rows per second through the persistence worker's write path
   (`TransactionPersister`: rows, AES-GCM sealing, `CassandraEventStore`) against the
   driver's fastest pattern for the same insert (one prepared statement,
   `execute_concurrent_with_args`, as many in flight as the worker allows), on the same
   table of a keyspace of its own;
2. scoring: scores per second through the scoring worker's path (`Scorer`: features,
   profiles, Triton, PostgreSQL, notification) and through its Triton adapter alone,
   against direct `tritonclient` gRPC calls to the same model with the same batch sizes,
   then where the worker path's time goes, stage by stage;
3. latency: from the trigger batch's ack (SubmitBatch answering FLUSHED) to the result row
   in PostgreSQL (read back when LISTEN says it was stored), at half the maximum end-to-end
   load measured, through an ingestion service, a scoring worker and a persistence worker
   that the benchmark starts for itself, as `make up` starts them.

Everything it writes is its own and is removed at the end: two organizations (their keys,
results and statuses go with them), a Cassandra keyspace, Kafka topics and consumer
groups under a prefix of the run, and Redis keys under another. Needs the local servers
(`make stack-up`); the Rased services of `make up` may run or not, they are not used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import os
import platform
import random
import secrets
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import asyncpg
import numpy as np
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from cassandra import ConsistencyLevel
from cassandra.concurrent import execute_concurrent_with_args
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from numpy.typing import NDArray
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient

from leftovers import drop_organizations, drop_redis_keys, drop_topics, warn_on_failure
from rased.adapters.cassandra.data_keys import CassandraDataKeys

# The worker's own INSERT, so that the driver's pattern sends exactly the same statement.
from rased.adapters.cassandra.event_store import _INSERT_EVENT, CassandraEventStore
from rased.adapters.cassandra.session import cassandra_session, execute
from rased.adapters.kafka.event_bus import KafkaEventBus
from rased.adapters.kafka.topics import KafkaTopicSettings, Topic, ensure_topics
from rased.adapters.postgres.keys import ApiKeyKind, ApiKeyStore, OrganizationStore
from rased.adapters.postgres.results import (
    RESULTS_CHANNEL,
    PostgresPendingTransactions,
    PostgresResultStore,
)
from rased.adapters.redis.profiles import RedisProfileStore
from rased.adapters.triton.model_client import INPUT_NAME, OUTPUT_NAME, TritonModelClient
from rased.common.crypto import MasterKeyring, generate_key, key_spec_entry
from rased.common.logging import configure_logging
from rased.devstack.settings import StackSettings, repository_root
from rased.migrations.cassandra import apply_cassandra_migrations
from rased.scoring.evidence import gather_evidence
from rased.services.persistence.persisting import TransactionPersister
from rased.services.persistence.rows import transaction_rows, ttl_seconds
from rased.services.scoring.breaker import CircuitBreaker
from rased.services.scoring.main import KafkaResultNotifier
from rased.services.scoring.ports import (
    ModelClient,
    PendingMarker,
    ProfileStore,
    ResultNotifier,
    ResultSink,
)
from rased.services.scoring.scoring import Scorer
from rased.v1 import (
    events_pb2,
    ingest_pb2,
    ingest_pb2_grpc,
    pipeline_pb2,
    session_pb2,
    session_pb2_grpc,
)

# The in-process scoring path announces on its own channel, so a results service of
# `make up` is not woken by the benchmark's organization.
SCORING_CHANNEL = "bench_pipeline_results"
MODEL = "bot_detection"
EVENTS_PER_BATCH = 20
BATCHES_PER_TRANSACTION = 4
# The persistence worker's defaults: 200 messages per poll, 128 CQL writes in flight.
PERSIST_POLL = 200
PERSIST_IN_FLIGHT = 128
# A transaction per scoring request, and the scoring worker's default poll (64 per request).
SCORING_BATCH_SIZES = (1, 64)
SESSIONS = 64  # spreads the load so the per-session rate limit (50 batches/s) never bites
MAX_LOAD_IN_FLIGHT = 16  # transactions in flight while the maximum load is measured


@dataclass(frozen=True)
class BenchRun:
    """The names of everything one run writes, so that all of it can be removed at the end."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def keyspace(self) -> str:
        """The Cassandra keyspace (the same migrations as the stack's)."""
        return f"bench_pipeline_{self.tag}"

    @property
    def topics(self) -> KafkaTopicSettings:
        """The Kafka topics, under the run's prefix."""
        return KafkaTopicSettings(prefix=f"bench-pipeline-{self.tag}-")

    @property
    def redis_prefix(self) -> str:
        """The prefix of every Redis key of the run (buffers, limits, profiles)."""
        return f"benchpipe{self.tag}:"

    def group(self, worker: str) -> str:
        """The consumer group of one worker."""
        return f"bench-pipeline-{self.tag}-{worker}"


def postgres_dsn(stack: StackSettings) -> str:
    """Return the stack's PostgreSQL DSN."""
    return (
        f"postgresql://{stack.postgres_user}@{stack.host}:{stack.postgres_port}/{stack.postgres_db}"
    )


def kafka_servers(stack: StackSettings) -> str:
    """Return the stack's Kafka bootstrap servers."""
    return f"{stack.host}:{stack.kafka_port}"


def triton_url(stack: StackSettings) -> str:
    """Return the stack's Triton gRPC endpoint."""
    return f"{stack.host}:{stack.triton_grpc_port}"


# -- workload ------------------------------------------------------------------------------


def make_batches(session: str, txn: str, rng: random.Random) -> list[events_pb2.EventBatch]:
    """Four batches of 20 events (a device event, then pointer moves), the last triggering."""
    batches = []
    t_ms = 1_764_000_000_000 + rng.randint(0, 10_000_000)
    x, y = rng.uniform(100, 900), rng.uniform(100, 600)
    for number in range(BATCHES_PER_TRANSACTION):
        batch = events_pb2.EventBatch(
            batch_id=f"{txn}-b{number}",
            session_id=session,
            transaction_id=txn,
            sequence=number,
            client_sent_at_ms=t_ms,
            sdk_version="1.4.2",
            page_url="https://pay.example.com/checkout",
            trigger=number == BATCHES_PER_TRANSACTION - 1,
        )
        for i in range(EVENTS_PER_BATCH):
            t_ms += rng.randint(8, 24)
            event = batch.events.add(timestamp_ms=t_ms)
            if number == 0 and i == 0:
                event.device.CopyFrom(
                    events_pb2.DeviceInfo(
                        user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
                        screen_width=1920,
                        screen_height=1080,
                        timezone="Asia/Riyadh",
                        languages=["ar-SA", "en-US"],
                        fingerprint_hash="ab" * 32,
                    )
                )
                continue
            x = min(1900.0, max(0.0, x + rng.gauss(6, 4)))
            y = min(1000.0, max(0.0, y + rng.gauss(3, 4)))
            event.pointer.CopyFrom(
                events_pb2.PointerEvent(action=events_pb2.POINTER_ACTION_MOVE, x=x, y=y)
            )
        batches.append(batch)
    return batches


def compiled_transaction(
    org: str, number: int, rng: random.Random, tag: str
) -> pipeline_pb2.CompiledTransaction:
    """One compiled transaction as ingestion publishes it (one segment, 80 events)."""
    session, txn = f"sess-{number % SESSIONS}", f"{tag}-{number}"
    batches = make_batches(session, txn, rng)
    compiled = pipeline_pb2.CompiledTransaction(
        organization_id=org,
        session_id=session,
        transaction_id=txn,
        segment=0,
        flush_reason=ingest_pb2.FLUSH_REASON_TRIGGER,
        batches=batches,
        batch_count=len(batches),
        event_count=sum(len(b.events) for b in batches),
        first_event_ms=batches[0].events[0].timestamp_ms,
        last_event_ms=batches[-1].events[-1].timestamp_ms,
        user_id=f"user-{number % 50}",
    )
    compiled.compiled_at.GetCurrentTime()
    return compiled


def renamed_copies(
    templates: Sequence[pipeline_pb2.CompiledTransaction], prefix: str
) -> list[pipeline_pb2.CompiledTransaction]:
    """Copies of the templates under fresh transaction ids, so every write is a new row."""
    copies = []
    for template in templates:
        message = pipeline_pb2.CompiledTransaction()
        message.CopyFrom(template)
        message.transaction_id = f"{prefix}-{template.transaction_id}"
        copies.append(message)
    return copies


def median(values: Sequence[float]) -> float:
    """Return the median (the upper one of an even count, as bench/ingest.py)."""
    return sorted(values)[len(values) // 2]


@dataclass
class Rates:
    """Rates per variant, one per round."""

    runs: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, rate: float) -> None:
        """Record one round's rate of a variant."""
        self.runs.setdefault(name, []).append(rate)

    def median(self, name: str) -> float:
        """Return the median of a variant's rounds."""
        return median(self.runs[name])

    def row(self, name: str) -> str:
        """Return the median and the rounds, for a table row."""
        return f"{self.median(name):.0f} | " + ", ".join(f"{r:.0f}" for r in self.runs[name])


async def timed_loop(
    seconds: float,
    prepare: Callable[[int], Any],
    act: Callable[[Any], Awaitable[int]],
) -> float:
    """Run `act(prepare(n))` until its timed part adds up to `seconds`; return units per second.

    Only `act` is timed: building the workload costs both sides nothing.
    """
    spent = 0.0
    units = 0
    number = 0
    while spent < seconds:
        work = prepare(number)
        start = time.perf_counter()
        units += await act(work)
        spent += time.perf_counter() - start
        number += 1
    return units / spent


# -- 1. persistence ------------------------------------------------------------------------


class FixedRetention:
    """Thirty days for every organization (the worker caches the real policy anyway)."""

    async def retention_days(self, organization_id: str) -> int:
        """Return 30."""
        return 30


async def bench_persistence(
    stack: StackSettings, run: BenchRun, org: str, master_keys: str, seconds: float, rounds: int
) -> Rates:
    """Rows per second: the worker's write path against execute_concurrent_with_args."""
    rates = Rates()
    rng = random.Random(11)
    templates = [compiled_transaction(org, n, rng, "tpl") for n in range(PERSIST_POLL)]
    async with cassandra_session(
        [stack.host],
        stack.cassandra_port,
        run.keyspace,
        consistency=ConsistencyLevel.LOCAL_QUORUM,  # as the persistence worker writes
    ) as session:
        store = await CassandraEventStore.prepare(session, PERSIST_IN_FLIGHT)
        keys = CassandraDataKeys(session, MasterKeyring.from_spec(master_keys))
        persister = TransactionPersister(store, keys, FixedRetention())
        insert = await asyncio.to_thread(session.prepare, _INSERT_EVENT)
        insert.is_idempotent = True
        keyring = await keys.keyring(org)
        ttl = ttl_seconds(30)

        def poll(tag: str) -> Callable[[int], list[pipeline_pb2.CompiledTransaction]]:
            return lambda number: renamed_copies(templates, f"{tag}-{number}")

        async def worker(polled: list[pipeline_pb2.CompiledTransaction]) -> int:
            # As PersistenceLoop does with one poll: every message at once, one bound.
            written = await asyncio.gather(*(persister.persist(c) for c in polled))
            return sum(written)

        def driver_rows(tag: str) -> Callable[[int], list[tuple[Any, ...]]]:
            def build(number: int) -> list[tuple[Any, ...]]:
                now = datetime.now(UTC)
                params: list[tuple[Any, ...]] = []
                for message in poll(tag)(number):
                    for row in transaction_rows(message).events:
                        sealed = keyring.seal(row.plaintext, row.associated_data())
                        params.append(
                            (
                                row.organization_id,
                                row.transaction_id,
                                row.event_time_ms,
                                row.sequence,
                                row.session_id,
                                row.event_type,
                                keyring.primary_key_id,
                                sealed,
                                now,
                                ttl,
                            )
                        )
                return params

            return build

        async def driver(params: list[tuple[Any, ...]]) -> int:
            # The driver's own concurrency runs on its I/O thread; the call blocks until done.
            results = await asyncio.to_thread(
                execute_concurrent_with_args,
                session,
                insert,
                params,
                concurrency=PERSIST_IN_FLIGHT,
                raise_on_first_error=True,
            )
            return len(results)

        print("persistence: warming up (data key, connections)", flush=True)
        await worker(poll("warm")(0))
        await driver(driver_rows("warmdrv")(0))
        for round_ in range(rounds):
            for name in ("driver", "worker"):
                # Fresh transaction ids every round: each write is a new row, on both sides.
                if name == "driver":
                    rate = await timed_loop(seconds, driver_rows(f"drv{round_}"), driver)
                else:
                    rate = await timed_loop(seconds, poll(f"wrk{round_}"), worker)
                rates.add(name, rate)
                print(
                    f"persistence round {round_ + 1}/{rounds} {name:<7} {rate:8.0f} rows/s",
                    flush=True,
                )
    return rates


# -- 2. scoring ----------------------------------------------------------------------------


class StageClock:
    """Per stage, the wall time during which at least one call of it was in progress.

    The Scorer runs its stages one after another, each as a gather of concurrent calls, so
    the union of a stage's call intervals within one batch is that stage's share of the
    batch's wall time; what no stage covers is the worker's own CPU (features, rules,
    protobuf).
    """

    def __init__(self) -> None:
        self._intervals: dict[str, list[tuple[float, float]]] = {}
        self.totals: dict[str, float] = {}
        self.batches = 0
        self.elapsed = 0.0

    def wrap(self, stage: str, call: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        """Return `call`, timed as part of `stage`."""

        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await call(*args, **kwargs)
            finally:
                self._intervals.setdefault(stage, []).append((start, time.perf_counter()))

        return timed

    def stage_ms(self, stage: str) -> float:
        """Return a stage's mean wall time per batch, in ms."""
        return self.totals.get(stage, 0.0) / max(1, self.batches) * 1000

    def own_ms(self) -> float:
        """Return the mean time per batch no stage covers (the worker's CPU), in ms."""
        return (self.elapsed - sum(self.totals.values())) / max(1, self.batches) * 1000

    def batch_ms(self) -> float:
        """Return the mean wall time of one batch, in ms."""
        return self.elapsed / max(1, self.batches) * 1000

    def end_batch(self, elapsed: float) -> None:
        """Add the batch's intervals, merged per stage, to the totals."""
        for stage, intervals in self._intervals.items():
            covered, reach = 0.0, float("-inf")
            for start, end in sorted(intervals):
                if end > reach:
                    covered += end - max(start, reach)
                    reach = end
            self.totals[stage] = self.totals.get(stage, 0.0) + covered
        self._intervals.clear()
        self.batches += 1
        self.elapsed += elapsed


class _Timed:
    """A port whose named coroutine methods are timed as stages of a StageClock."""

    def __init__(self, inner: object, clock: StageClock, stages: dict[str, str]) -> None:
        for method, stage in stages.items():
            setattr(self, method, clock.wrap(stage, getattr(inner, method)))


STAGES = (
    ("lookup", "PostgreSQL: look up the poll's stored results (one query)"),
    ("pending", "PostgreSQL: mark the poll's transactions SCORING (one statement)"),
    ("profiles", "Redis: load and save user profiles"),
    ("model", "Triton: one request for the batch"),
    ("save", "PostgreSQL: store the results (one transaction per org, its cursor lock once)"),
    ("notify", "Kafka: one client_notification per result (acks=all)"),
)


async def direct_infer(client: InferenceServerClient, batch: NDArray[np.float32]) -> int:
    """Score a batch with one plain tritonclient call, as its documentation shows it."""
    request = InferInput(INPUT_NAME, list(batch.shape), "FP32")
    request.set_data_from_numpy(batch)
    result = await client.infer(MODEL, [request], outputs=[InferRequestedOutput(OUTPUT_NAME)])
    output = result.as_numpy(OUTPUT_NAME)
    if output is None or output.shape != (batch.shape[0], 2):
        raise SystemExit(f"{MODEL} answered an unexpected output")
    return int(batch.shape[0])


@dataclass(frozen=True)
class ScoringPorts:
    """The adapters a Scorer is built from."""

    model: ModelClient
    profiles: ProfileStore
    results: ResultSink
    pending: PendingMarker
    notifier: ResultNotifier


async def scoring_breakdown(
    ports: ScoringPorts,
    batches: Callable[[int], list[pipeline_pb2.CompiledTransaction]],
    seconds: float,
) -> StageClock:
    """Score fresh batches for `seconds` through timed ports; return the time per stage."""
    clock = StageClock()
    scorer = Scorer(
        cast(ModelClient, _Timed(ports.model, clock, {"bot_probabilities": "model"})),
        CircuitBreaker(5, 10.0),
        cast(ProfileStore, _Timed(ports.profiles, clock, {"load": "profiles", "save": "profiles"})),
        cast(
            ResultSink,
            _Timed(ports.results, clock, {"get_many": "lookup", "save_many": "save"}),
        ),
        cast(PendingMarker, _Timed(ports.pending, clock, {"mark_many": "pending"})),
        cast(ResultNotifier, _Timed(ports.notifier, clock, {"notify": "notify"})),
    )
    spent = 0.0
    number = 0
    while spent < seconds:
        batch = batches(number)
        start = time.perf_counter()
        await scorer.score(batch, time.monotonic())
        elapsed = time.perf_counter() - start
        clock.end_batch(elapsed)
        spent += elapsed
        number += 1
    return clock


async def bench_scoring(
    stack: StackSettings, run: BenchRun, pool: asyncpg.Pool, org: str, seconds: float, rounds: int
) -> tuple[Rates, dict[int, StageClock]]:
    """Scores per second: Scorer and TritonModelClient against direct tritonclient calls."""
    redis = aioredis.Redis.from_url(f"redis://{stack.host}:{stack.redis_port}/0")
    bus = KafkaEventBus(kafka_servers(stack), run.topics, client_id="bench-pipeline")
    await bus.start()
    adapter = TritonModelClient(triton_url(stack), MODEL)
    raw = InferenceServerClient(url=triton_url(stack))
    profiles = RedisProfileStore(redis, run.redis_prefix + "scorer:")
    results = PostgresResultStore(pool, channel=SCORING_CHANNEL)
    pending = PostgresPendingTransactions(pool)
    notifier = KafkaResultNotifier(bus)
    scorer = Scorer(adapter, CircuitBreaker(5, 10.0), profiles, results, pending, notifier)
    rng = random.Random(5)
    templates = [compiled_transaction(org, n, rng, "tpl") for n in range(max(SCORING_BATCH_SIZES))]
    features = np.stack([gather_evidence(c).bot_features for c in templates]).astype(np.float32)
    rates = Rates()
    counter = itertools.count()

    def fresh(size: int) -> Callable[[int], list[pipeline_pb2.CompiledTransaction]]:
        return lambda _number: renamed_copies(templates[:size], f"s{next(counter)}")

    def rows(size: int) -> Callable[[int], NDArray[np.float32]]:
        return lambda _number: np.ascontiguousarray(features[:size])

    async def direct(batch: NDArray[np.float32]) -> int:
        return await direct_infer(raw, batch)

    async def through_adapter(batch: NDArray[np.float32]) -> int:
        return len((await adapter.bot_probabilities(batch)).probabilities)

    async def through_scorer(batch: list[pipeline_pb2.CompiledTransaction]) -> int:
        outcome = await scorer.score(batch, time.monotonic())
        if outcome.stored != len(batch) or outcome.degraded:
            raise SystemExit(f"the scorer stored {outcome.stored}/{len(batch)}: {outcome}")
        return outcome.stored

    breakdowns: dict[int, StageClock] = {}
    try:
        print("scoring: warming up (connections, the model)", flush=True)
        for size in SCORING_BATCH_SIZES:
            await direct(rows(size)(0))
            await through_adapter(rows(size)(0))
            await through_scorer(fresh(size)(0))
        for round_ in range(rounds):
            for size in SCORING_BATCH_SIZES:
                variants: list[tuple[str, float]] = [
                    ("direct", await timed_loop(seconds, rows(size), direct)),
                    ("adapter", await timed_loop(seconds, rows(size), through_adapter)),
                    ("worker", await timed_loop(seconds, fresh(size), through_scorer)),
                ]
                for name, rate in variants:
                    rates.add(f"{name}-{size}", rate)
                    print(
                        f"scoring round {round_ + 1}/{rounds} batch {size:3d} {name:<8} "
                        f"{rate:8.0f} scores/s",
                        flush=True,
                    )
        # Where the worker path's time goes: the same Scorer over timed ports, not counted
        # in the rates above (the timing wrappers cost a little).
        ports = ScoringPorts(adapter, profiles, results, pending, notifier)
        for size in SCORING_BATCH_SIZES:
            clock = await scoring_breakdown(ports, fresh(size), seconds)
            breakdowns[size] = clock
            print(
                f"scoring breakdown batch {size:3d}: "
                + ", ".join(f"{stage} {clock.stage_ms(stage):.1f} ms" for stage, _ in STAGES)
                + f", own CPU {clock.own_ms():.1f} ms, total {clock.batch_ms():.1f} ms per batch",
                flush=True,
            )
    finally:
        await adapter.close()
        await raw.close()
        await bus.close()
        await redis.aclose()
    return rates, breakdowns


# -- 3. latency ----------------------------------------------------------------------------


def free_port(host: str) -> int:
    """Return a TCP port nobody listens on now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class ServiceSpec:
    """One Rased service the latency measurement runs: its module and its environment."""

    name: str
    module: str
    host: str
    port: int
    env: dict[str, str]


def service_specs(
    stack: StackSettings, run: BenchRun, session_secret: str, master_keys: str
) -> list[ServiceSpec]:
    """The ingestion service and both workers, set up as `make up` sets them, in the run's names.

    Their own secrets (the stack's dev secrets are not touched), the run's topics, consumer
    groups, keyspace and Redis prefix, and ports of their own, so a `make up` stack may run
    next to them. Logs at WARNING, as bench/ingest.py runs its servers.
    """
    host = stack.host
    shared = {
        "GRPC_HOST": host,
        "LOG_LEVEL": "WARNING",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_servers(stack),
        "POSTGRES_DSN": postgres_dsn(stack),
    }
    per_service = {
        "ingestion": {
            "REDIS_URL": f"redis://{host}:{stack.redis_port}/0",
            "REDIS_KEY_PREFIX": run.redis_prefix + "ingest:",
            "SESSION_TOKEN_SECRET": session_secret,
            "MASTER_KEYS": master_keys,
        },
        "scoring": {
            "REDIS_URL": f"redis://{host}:{stack.redis_port}/0",
            "REDIS_KEY_PREFIX": run.redis_prefix + "profiles:",
            "TRITON_URL": triton_url(stack),
            "CONSUMER_GROUP": run.group("scoring"),
        },
        "persistence": {
            "CASSANDRA_CONTACT_POINTS": f'["{host}"]',  # a JSON list, as pydantic reads lists
            "CASSANDRA_PORT": str(stack.cassandra_port),
            "CASSANDRA_KEYSPACE": run.keyspace,
            "MASTER_KEYS": master_keys,
            "CONSUMER_GROUP": run.group("persistence"),
        },
    }
    specs = []
    for name, own in per_service.items():
        port = free_port(host)
        prefix = f"RASED_{name.upper()}_"
        env = {prefix + key: value for key, value in {**shared, **own}.items()}
        env[prefix + "GRPC_PORT"] = str(port)
        env["RASED_KAFKA_TOPICS_PREFIX"] = run.topics.prefix
        specs.append(ServiceSpec(name, f"rased.services.{name}.main", host, port, env))
    return specs


class Services:
    """The services of the latency measurement, as child processes; stopped by `stop`."""

    def __init__(self, specs: Sequence[ServiceSpec], log_dir: Path) -> None:
        self._specs = list(specs)
        self._log_dir = log_dir
        self._procs: dict[str, asyncio.subprocess.Process] = {}

    def address(self, name: str) -> str:
        """Return the gRPC address (host:port) of one service."""
        return next(f"{spec.host}:{spec.port}" for spec in self._specs if spec.name == name)

    async def start(self, within_s: float = 120.0) -> None:
        """Start every service and wait until each one's grpc.health says SERVING."""
        for spec in self._specs:
            log = (self._log_dir / f"{spec.name}.log").open("wb")
            try:
                self._procs[spec.name] = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    spec.module,
                    env={**os.environ, **spec.env},
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                )
            finally:
                log.close()  # the child holds its own copy of the descriptor
        deadline = time.monotonic() + within_s
        for spec in self._specs:
            while not await self._serving(spec):
                proc = self._procs[spec.name]
                if proc.returncode is not None or time.monotonic() > deadline:
                    why = "exited" if proc.returncode is not None else "is not SERVING"
                    raise SystemExit(f"the {spec.name} service {why}:\n{self.log_tail(spec.name)}")
                await asyncio.sleep(0.5)
            print(f"latency: {spec.name} serving on port {spec.port}", flush=True)

    async def _serving(self, spec: ServiceSpec) -> bool:
        try:
            async with aio.insecure_channel(f"{spec.host}:{spec.port}") as channel:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=2
                )
        except aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def log_tail(self, name: str, chars: int = 3000) -> str:
        """Return the end of a service's log."""
        path = self._log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"

    def print_logs(self) -> None:
        """Print the end of every service's log."""
        for spec in self._specs:
            print(f"--- {spec.name} log (end) ---\n{self.log_tail(spec.name)}", flush=True)

    async def stop(self) -> None:
        """SIGTERM every service (they drain and commit), kill any that outlives 30 s."""
        for proc in self._procs.values():
            if proc.returncode is None:
                proc.terminate()
        for name, proc in self._procs.items():
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                print(f"the {name} service did not stop in 30 s; killing it", flush=True)
                proc.kill()
                await proc.wait()
        self._procs.clear()


class ResultWatcher:
    """Stamps each of an organization's result rows with when it was read back after NOTIFY."""

    def __init__(self, dsn: str, pool: asyncpg.Pool, org: str) -> None:
        self._dsn = dsn
        self._pool = pool
        self._org = uuid.UUID(org)
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._cursor = 0
        self.seen: dict[str, float] = {}
        # The worker's own processing_time_ms per result: from its poll to the row stored.
        self.processing_ms: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None

    async def start(self) -> None:
        """Listen on the results channel and start fetching."""
        self._conn = await asyncpg.connect(self._dsn)
        await self._conn.add_listener(RESULTS_CHANNEL, self._on_notify)
        self._task = asyncio.create_task(self._fetch())

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload == str(self._org):
            self._wake.set()

    async def _fetch(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            rows = await self._pool.fetch(
                "SELECT transaction_id, cursor, processing_time_ms FROM results "
                "WHERE organization_id = $1 AND cursor > $2 ORDER BY cursor",
                self._org,
                self._cursor,
            )
            # Stamped once read back, as a client reading the results would first see them
            # (a query's round trip later than the commit: the figure errs on the slow side).
            stamp = time.perf_counter()
            for row in rows:
                self.seen.setdefault(row["transaction_id"], stamp)
                self.processing_ms.setdefault(row["transaction_id"], row["processing_time_ms"])
                self._cursor = max(self._cursor, int(row["cursor"]))
            self._changed.set()

    async def wait_for(self, transactions: Sequence[str], within_s: float) -> None:
        """Wait until every transaction has a result, or `within_s` seconds have passed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                while any(t not in self.seen for t in transactions):
                    self._changed.clear()
                    await self._changed.wait()

    async def close(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None:
            await self._conn.close()


async def wait_for_backlog(
    bootstrap: str, group: str, topic: str, partitions: int, within_s: float
) -> int:
    """Wait until `group` has committed everything `topic` holds; return what is left."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-pipeline")
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id="bench-pipeline")
    await admin.start()
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        deadline = time.monotonic() + within_s
        reported = 0.0
        while True:
            ends = await consumer.end_offsets(assigned)
            committed = await admin.list_consumer_group_offsets(group, partitions=assigned)
            left = sum(
                ends[tp] - max(0, committed[tp].offset if tp in committed else 0) for tp in assigned
            )
            if left <= 0 or time.monotonic() > deadline:
                return max(0, int(left))
            if time.monotonic() - reported > 5:
                print(f"latency: persistence backlog {left} transactions", flush=True)
                reported = time.monotonic()
            await asyncio.sleep(0.5)
    finally:
        await consumer.stop()
        await admin.close()


@dataclass
class Latency:
    """What the latency measurement found."""

    max_rate: float
    ack_rate: float
    target_rate: float
    sent: int
    scored: int
    latencies_ms: list[float]
    processing_ms: list[float]
    persistence_backlog: int

    def percentile(self, q: float) -> float:
        """Return the q-th percentile (0-100) of the latencies in ms."""
        return float(np.percentile(np.asarray(self.latencies_ms), q))

    def processing_percentile(self, q: float) -> float:
        """Return the q-th percentile of the scoring worker's own processing time in ms."""
        return float(np.percentile(np.asarray(self.processing_ms), q))


class LoadDriver:
    """Sends transactions through the ingestion service as the SDK does, stamping each ack."""

    def __init__(self, channel: aio.Channel, tokens: Sequence[tuple[str, str]]) -> None:
        self._stub = ingest_pb2_grpc.IngestServiceStub(channel)
        self._tokens = list(tokens)
        self._rng = random.Random(3)
        self.acked: dict[str, float] = {}

    @classmethod
    async def open(cls, channel: aio.Channel, secret: str) -> LoadDriver:
        """Mint a session token for each of the sessions, as a client's backend does."""
        sessions = session_pb2_grpc.SessionServiceStub(channel)
        tokens = []
        for number in range(SESSIONS):
            created = await sessions.CreateSession(
                session_pb2.CreateSessionRequest(
                    session_id=f"bench-sess-{number}", user_id=f"user-{number % 50}"
                ),
                metadata=(("authorization", f"Bearer {secret}"),),
            )
            tokens.append((created.session_id, created.token))
        return cls(channel, tokens)

    async def transaction(self, number: int, tag: str) -> None:
        """Send one transaction's batches in order; stamp the trigger batch's FLUSHED ack."""
        session, token = self._tokens[number % len(self._tokens)]
        txn = f"{tag}-{number}-{uuid.uuid4().hex[:6]}"
        metadata = (("authorization", f"Bearer {token}"),)
        answer = ingest_pb2.SubmitBatchResponse()
        for batch in make_batches(session, txn, self._rng):
            answer = await self._stub.SubmitBatch(
                ingest_pb2.SubmitBatchRequest(batch=batch), metadata=metadata
            )
        if answer.disposition != ingest_pb2.BATCH_DISPOSITION_FLUSHED:
            raise SystemExit(f"the trigger batch of {txn} was not flushed: {answer}")
        self.acked[txn] = time.perf_counter()

    async def closed_loop(self, seconds: float, in_flight: int) -> float:
        """Keep `in_flight` transactions going for `seconds`; return when it started."""
        start = time.perf_counter()
        deadline = start + seconds
        numbers = itertools.count()

        async def lane() -> None:
            while time.perf_counter() < deadline:
                await self.transaction(next(numbers), "max")

        await asyncio.gather(*(lane() for _ in range(in_flight)))
        return start

    async def open_loop(self, count: int, rate: float) -> None:
        """Start a transaction every 1/rate s, whatever the others are doing."""
        start = time.perf_counter()
        tasks = []
        for number in range(count):
            await asyncio.sleep(max(0.0, start + number / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(self.transaction(number, "half")))
        await asyncio.gather(*tasks)


async def bench_latency(
    stack: StackSettings, run: BenchRun, pool: asyncpg.Pool, org: str, seconds: float, ingest: str
) -> Latency:
    """Max end-to-end load (closed loop), then ack -> result row at half of it (open loop)."""
    _, secret = await ApiKeyStore(pool).create(org, ApiKeyKind.SECRET, label="bench-pipeline")
    watcher = ResultWatcher(postgres_dsn(stack), pool, org)
    await watcher.start()

    async def persistence_backlog(within_s: float) -> int:
        return await wait_for_backlog(
            kafka_servers(stack),
            run.group("persistence"),
            run.topics.topic_name(Topic.DATA_PERSISTENCE),
            run.topics.data_persistence_partitions,
            within_s,
        )

    try:
        async with aio.insecure_channel(ingest) as channel:
            load = await LoadDriver.open(channel, secret)
            # The consumers join their groups in the first seconds: wait for a first result.
            print("latency: warming up (consumer groups joining)", flush=True)
            await load.transaction(0, "warm")
            await watcher.wait_for(list(load.acked), 60)
            if not all(t in watcher.seen for t in load.acked):
                raise SystemExit("latency: no result within 60 s of the warm-up transaction")
            load.acked.clear()

            print(
                f"latency: {seconds:.0f} s at maximum load "
                f"({MAX_LOAD_IN_FLIGHT} transactions in flight)",
                flush=True,
            )
            start = await load.closed_loop(seconds, MAX_LOAD_IN_FLIGHT)
            ack_rate = len(load.acked) / (time.perf_counter() - start)
            await watcher.wait_for(list(load.acked), 120)
            done = [watcher.seen[t] for t in load.acked if t in watcher.seen]
            max_rate = len(done) / (max(done) - start)
            print(
                f"latency: max load {max_rate:.1f} transactions/s end to end "
                f"(ingestion acked {ack_rate:.1f}/s, {len(done)}/{len(load.acked)} scored)",
                flush=True,
            )
            # Start the half-load run from quiet: the persistence worker may still be
            # writing the maximum load's events.
            await persistence_backlog(180)

            target = max_rate / 2
            count = max(1, int(seconds * target))
            print(
                f"latency: {count} transactions at {target:.1f}/s (half the maximum), open loop",
                flush=True,
            )
            load.acked.clear()
            await load.open_loop(count, target)
            await watcher.wait_for(list(load.acked), 60)
            # What persistence still had to write when the last result came (0: it kept up).
            backlog = await persistence_backlog(0)
    finally:
        await watcher.close()
    acked = load.acked
    latencies = [(watcher.seen[t] - at) * 1000 for t, at in acked.items() if t in watcher.seen]
    processing = [watcher.processing_ms[t] for t in acked if t in watcher.seen]
    if not latencies:
        raise SystemExit("latency: no transaction of the half-load run was scored")
    return Latency(
        max_rate, ack_rate, target, len(acked), len(latencies), latencies, processing, backlog
    )


# -- orchestration -------------------------------------------------------------------------


@dataclass
class Figures:
    """Everything one run measured."""

    persistence: Rates
    scoring: Rates
    breakdowns: dict[int, StageClock]
    latency: Latency
    load_at_start: float
    seconds: float
    rounds: int
    latency_seconds: float


async def run_all(
    seconds: float, rounds: int, latency_seconds: float, report: Path | None
) -> Figures:
    """Run the three measurements, print them, and write them into the report."""
    configure_logging("bench-pipeline", "WARNING")
    stack = StackSettings()
    run = BenchRun()
    load_at_start = os.getloadavg()[0]
    session_secret = secrets.token_urlsafe(48)
    master_keys = key_spec_entry("bench-1", generate_key())
    print(f"bench/pipeline.py run {run.tag}: {seconds:.0f} s per run, {rounds} rounds", flush=True)
    pool = await asyncpg.create_pool(postgres_dsn(stack), min_size=1, max_size=8)
    orgs: list[str] = []
    try:
        await apply_cassandra_migrations(
            [stack.host],
            stack.cassandra_port,
            run.keyspace,
            {"class": "SimpleStrategy", "replication_factor": 1},
        )
        await ensure_topics(kafka_servers(stack), run.topics)
        orgs.append(await OrganizationStore(pool).create(f"bench-pipeline-{run.tag}"))
        persistence = await bench_persistence(stack, run, orgs[0], master_keys, seconds, rounds)
        scoring, breakdowns = await bench_scoring(stack, run, pool, orgs[0], seconds, rounds)
        orgs.append(await OrganizationStore(pool).create(f"bench-pipeline-latency-{run.tag}"))
        with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as logs:
            services = Services(service_specs(stack, run, session_secret, master_keys), Path(logs))
            print("latency: starting ingestion, scoring and persistence", flush=True)
            try:
                await services.start()
                latency = await bench_latency(
                    stack, run, pool, orgs[1], latency_seconds, services.address("ingestion")
                )
            except Exception:
                services.print_logs()  # what the services said is the first thing to read
                raise
            finally:
                await services.stop()
    finally:
        await cleanup(stack, run, pool, orgs)
        await pool.close()
    figures = Figures(
        persistence,
        scoring,
        breakdowns,
        latency,
        load_at_start,
        seconds,
        rounds,
        latency_seconds,
    )
    print_summary(figures)
    if report is not None:
        write_report(report, figures)
    return figures


async def cleanup(stack: StackSettings, run: BenchRun, pool: asyncpg.Pool, orgs: list[str]) -> None:
    """Remove what the run wrote: each step on its own, so one failing skips no other."""
    print(f"cleaning up run {run.tag}", flush=True)
    with warn_on_failure("the organizations"):
        await drop_organizations(pool, orgs)
    with warn_on_failure("the Cassandra keyspace"):
        async with cassandra_session([stack.host], stack.cassandra_port) as session:
            await execute(session, f"DROP KEYSPACE IF EXISTS {run.keyspace}")
    with warn_on_failure("the Kafka topics"):
        await drop_topics(kafka_servers(stack), [spec.name for spec in run.topics.specs()])
    with warn_on_failure("the Redis keys"):
        await drop_redis_keys(f"redis://{stack.host}:{stack.redis_port}/0", run.redis_prefix)


def print_summary(figures: Figures) -> None:
    """Print the medians, the ratios and the latency percentiles."""
    persistence, scoring, latency = figures.persistence, figures.scoring, figures.latency
    ratio = persistence.median("worker") / persistence.median("driver")
    print(
        f"\npersistence: driver {persistence.median('driver'):.0f} rows/s, worker "
        f"{persistence.median('worker'):.0f} rows/s, ratio {ratio:.2f}"
    )
    for size in SCORING_BATCH_SIZES:
        direct = scoring.median(f"direct-{size}")
        print(
            f"scoring batch {size}: direct {direct:.0f}/s, adapter "
            f"{scoring.median(f'adapter-{size}'):.0f}/s "
            f"(ratio {scoring.median(f'adapter-{size}') / direct:.2f}), worker path "
            f"{scoring.median(f'worker-{size}'):.0f}/s "
            f"(ratio {scoring.median(f'worker-{size}') / direct:.3f})"
        )
    print(
        f"latency at {latency.target_rate:.1f} transactions/s (half of {latency.max_rate:.1f}): "
        f"p50 {latency.percentile(50):.0f} ms, p99 {latency.percentile(99):.0f} ms, "
        f"{latency.scored}/{latency.sent} scored; of which in the scoring worker (poll to "
        f"stored): p50 {latency.processing_percentile(50):.0f} ms, "
        f"p99 {latency.processing_percentile(99):.0f} ms",
        flush=True,
    )


def _machine(figures: Figures) -> str:
    return (
        f"{time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()} (load average {figures.load_at_start:.1f} at the "
        "start: the machine is shared)"
    )


def write_report(report: Path, figures: Figures) -> None:
    """Replace (or add) this benchmark's sections of the report, leaving the others alone."""
    persistence, scoring, latency = figures.persistence, figures.scoring, figures.latency
    seconds, rounds = figures.seconds, figures.rounds
    ratio = persistence.median("worker") / persistence.median("driver")
    clocks = [figures.breakdowns[size] for size in SCORING_BATCH_SIZES]

    def breakdown_row(label: str, values: Sequence[float], bold: bool = False) -> str:
        cells = (f"**{v:.1f}**" if bold else f"{v:.1f}" for v in values)
        return f"| {label} | " + " | ".join(cells) + " |"

    breakdown_rows = [
        *(breakdown_row(label, [c.stage_ms(stage) for c in clocks]) for stage, label in STAGES),
        breakdown_row(
            "the worker's own CPU: features, rules, protobuf (what no stage above covers)",
            [c.own_ms() for c in clocks],
        ),
        breakdown_row("**one batch, in all**", [c.batch_ms() for c in clocks], bold=True),
    ]
    sections = {
        "## Pipeline: persistence rows per second": [
            "## Pipeline: persistence rows per second (bench/pipeline.py)",
            "",
            f"Measured {_machine(figures)}; at least {seconds:.0f} s per run (one poll at "
            f"least), {rounds} alternating runs, median shown. Polls of {PERSIST_POLL} "
            f"compiled transactions of {BATCHES_PER_TRANSACTION * EVENTS_PER_BATCH} events; "
            f"{PERSIST_IN_FLIGHT} writes in flight on both sides; LOCAL_QUORUM on single-node "
            "Cassandra 5.0 sharing the cores with the client. Only event rows are counted "
            "(the worker also writes two listing rows per transaction).",
            "",
            "| path | event rows/s | runs |",
            "|---|---|---|",
            "| driver: one prepared INSERT, `execute_concurrent_with_args` (payloads sealed "
            f"beforehand, not timed) | {persistence.row('driver')} |",
            "| worker: `TransactionPersister` (rows, AES-256-GCM sealing per event, data key "
            f"cache, `CassandraEventStore`) | {persistence.row('worker')} |",
            "",
            f"**Ratio: {ratio:.2f}**.",
            "",
        ],
        "## Pipeline: scores per second": [
            "## Pipeline: scores per second (bench/pipeline.py)",
            "",
            f"Measured {_machine(figures)}; {seconds:.0f} s per run, {rounds} alternating runs, "
            f"median shown. `{MODEL}` on the stack's Triton (CPU, python backend); one request "
            "in flight, as the scoring loop sends one per poll. The worker path stores every "
            "result in PostgreSQL, so its rate is that of the whole scoring step.",
            "",
            "| batch | path | scores/s | runs | ratio to direct |",
            "|---|---|---|---|---|",
            *(
                f"| {size} | {label} | {scoring.row(f'{name}-{size}')} | "
                f"{scoring.median(f'{name}-{size}') / scoring.median(f'direct-{size}'):.3f} |"
                for size in SCORING_BATCH_SIZES
                for name, label in (
                    ("direct", "direct `tritonclient.grpc.aio` infer"),
                    ("adapter", "`TritonModelClient` (the worker's adapter)"),
                    (
                        "worker",
                        "`Scorer.score`: features, Redis profiles, Triton, PostgreSQL, "
                        "Kafka notification",
                    ),
                )
            ),
            "",
            "Where the worker path's time goes, in ms per batch (the same `Scorer` over timed "
            f"ports, {seconds:.0f} s per batch size, after the rates above; each stage's "
            "concurrent calls counted once):",
            "",
            "| stage | " + " | ".join(f"batch {size}" for size in SCORING_BATCH_SIZES) + " |",
            "|---|" + "---|" * len(SCORING_BATCH_SIZES),
            *breakdown_rows,
            "",
        ],
        "## Pipeline: latency from trigger to result": [
            "## Pipeline: latency from trigger to result (bench/pipeline.py)",
            "",
            f"Measured {_machine(figures)}. The benchmark starts an ingestion service, a "
            "scoring worker and a persistence worker (one process each, as `make up` runs "
            "them, on topics, groups and a keyspace of its own) next to the stack's servers. "
            "From the trigger batch's FLUSHED ack to the result row read back from PostgreSQL "
            "after its NOTIFY; 4 batches of 20 events per transaction, 64 sessions. Maximum "
            f"end-to-end load ({MAX_LOAD_IN_FLIGHT} transactions in flight, "
            f"{figures.latency_seconds:.0f} s): {latency.max_rate:.1f} transactions/s "
            f"(ingestion acked {latency.ack_rate:.1f}/s); then {figures.latency_seconds:.0f} s "
            f"at half of it, open loop, once the persistence worker had caught up. "
            f"Persistence backlog when the last result came: {latency.persistence_backlog} "
            "transactions.",
            "",
            "| at half the maximum load | transactions scored | p50 | p99 | max |",
            "|---|---|---|---|---|",
            f"| {latency.target_rate:.1f}/s (half of {latency.max_rate:.1f}/s): trigger ack to "
            f"result row | {latency.scored}/{latency.sent} | "
            f"{latency.percentile(50):.0f} ms | {latency.percentile(99):.0f} ms | "
            f"{max(latency.latencies_ms):.0f} ms |",
            "| of which in the scoring worker: its `processing_time_ms`, from its poll to the "
            "row stored (the rest: Kafka, waiting for a poll, NOTIFY and the read back) | | "
            f"{latency.processing_percentile(50):.0f} ms | "
            f"{latency.processing_percentile(99):.0f} ms | {max(latency.processing_ms):.0f} ms |",
            "",
            f"The p99 rests on the slowest {math.ceil(latency.scored / 100)} or so of "
            f"{latency.scored} transactions.",
            "",
        ],
    }
    text = report.read_text() if report.exists() else "# Benchmarks\n\n"
    for marker, lines in sections.items():
        text = replace_section(text, marker, "\n".join(lines))
    report.write_text(text)
    print(f"figures written to {report}")


def replace_section(text: str, marker: str, section: str) -> str:
    """Replace the `## ` section starting with `marker`, or append it."""
    if marker not in text:
        return text.rstrip() + "\n\n" + section
    head, _, rest = text.partition(marker)
    tail = rest.split("\n## ", 1)
    return head + section + ("\n## " + tail[1] if len(tail) > 1 else "")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("--seconds", type=float, default=4.0, help="timed seconds per throughput run")
    run.add_argument("--rounds", type=int, default=3, help="alternating rounds per variant")
    run.add_argument(
        "--latency-seconds",
        type=float,
        default=15.0,
        help="seconds at maximum load, then again at half of it",
    )
    run.add_argument("--report", type=Path, default=repository_root() / "docs/benchmarks.md")
    options = parser.parse_args(argv)
    asyncio.run(run_all(options.seconds, options.rounds, options.latency_seconds, options.report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
