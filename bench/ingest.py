"""Ingestion throughput against a no-op grpc.aio servicer of the same proto (`make bench`).

Both servers run, one at a time, in their own process; the same client process drives each
with the same workload: 20 events per batch (10-20 KB), four batches per transaction, the
last one triggering the flush. The ratio of the two rates is the figure that matters, since
these machines are shared and noisy. Needs the local stack (`make stack-up`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from grpc import aio

from leftovers import drop_organizations, drop_redis_keys, drop_topics, warn_on_failure
from rased.adapters.kafka.topics import KafkaTopicSettings, ensure_topics
from rased.adapters.postgres.keys import OrganizationStore
from rased.common.logging import configure_logging
from rased.devstack.settings import StackSettings, repository_root
from rased.services.ingestion.sessions import SessionTokens
from rased.v1 import events_pb2, ingest_pb2, ingest_pb2_grpc

SIGNING = "bench-" + "k" * 40
MASTER = "bench:" + "A" * 43
EVENTS_PER_BATCH = 20
# How the orchestrating process tells the ingestion server its run's topics.
TOPIC_PREFIX_VARIABLE = "RASED_BENCH_TOPIC_PREFIX"
BATCHES_PER_TRANSACTION = 4


def workload(session: str, txn: str, rng: random.Random) -> list[events_pb2.EventBatch]:
    """Four batches of 20 events (10-20 KB each), the last one triggering."""
    batches = []
    for number in range(BATCHES_PER_TRANSACTION):
        batch = events_pb2.EventBatch(
            batch_id=f"{txn}-b{number}",
            session_id=session,
            transaction_id=txn,
            sequence=number,
            client_sent_at_ms=1_764_000_000_000 + number * 1000,
            sdk_version="1.4.2",
            page_url="https://pay.example.com/checkout",
            trigger=number == BATCHES_PER_TRANSACTION - 1,
        )
        padding = rng.randint(450, 950)  # bytes per event, so a batch is 10-20 KB
        for i in range(EVENTS_PER_BATCH):
            event = batch.events.add(timestamp_ms=1_764_000_000_000 + number * 1000 + i * 10)
            if i % 5 == 0:
                event.device.CopyFrom(
                    events_pb2.DeviceInfo(
                        user_agent="Mozilla/5.0 " + "x" * padding,
                        screen_width=1920,
                        screen_height=1080,
                        timezone="Asia/Riyadh",
                        languages=["ar-SA", "en-US"],
                        fingerprint_hash="ab" * 32,
                    )
                )
            else:
                event.navigation.CopyFrom(
                    events_pb2.NavigationEvent(
                        action=events_pb2.NAVIGATION_ACTION_ROUTE_CHANGE,
                        url="https://pay.example.com/" + "p" * min(padding, 2000),
                    )
                )
        batches.append(batch)
    return batches


# -- servers -------------------------------------------------------------------------------


class NoopIngest(ingest_pb2_grpc.IngestServiceServicer):
    """Answers every batch at once: the cost of gRPC and protobuf alone."""

    async def SubmitBatch(  # noqa: N802 - gRPC's method name
        self, request: ingest_pb2.SubmitBatchRequest, context: object
    ) -> ingest_pb2.SubmitBatchResponse:
        """Return an empty answer."""
        return ingest_pb2.SubmitBatchResponse()

    async def StreamBatches(  # noqa: N802 - gRPC's method name
        self, request_iterator: object, context: object
    ) -> ingest_pb2.StreamBatchesResponse:
        """Not measured; answers empty."""
        return ingest_pb2.StreamBatchesResponse()


async def serve_noop(port: int) -> None:
    """Run the no-op servicer until killed."""
    server = aio.server()
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(NoopIngest(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


async def serve_framework(port: int) -> None:
    """Run the no-op servicer inside Rased's server bootstrap (interceptors, health, metrics)."""
    from datetime import timedelta

    from rased.common.server import GrpcServer
    from rased.common.settings import ServiceSettings

    def register(server: aio.Server) -> list[str]:
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(NoopIngest(), server)
        return ["rased.v1.IngestService"]

    configure_logging("bench-framework", "WARNING")
    settings = ServiceSettings(grpc_port=port, shutdown_drain=timedelta(0))
    server = GrpcServer(settings, register, self_validated_methods=_SELF_VALIDATED)
    await server.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


# The same methods the ingestion service validates itself (after authenticating).
_SELF_VALIDATED = frozenset(
    {"/rased.v1.IngestService/SubmitBatch", "/rased.v1.IngestService/StreamBatches"}
)


async def serve_ingestion(port: int) -> None:
    """Run the real ingestion server (auth, validation, rate limits, Redis, Kafka)."""
    from rased.services.ingestion.main import build_server
    from rased.services.ingestion.settings import IngestionSettings

    configure_logging("bench-ingestion", "WARNING")
    settings = IngestionSettings(grpc_port=port)  # type: ignore[call-arg]
    topics = KafkaTopicSettings(prefix=os.environ[TOPIC_PREFIX_VARIABLE])
    server = await build_server(settings, topics)
    await server.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


# -- client --------------------------------------------------------------------------------


async def drive(
    port: int, token: str, seconds: float, concurrency: int, seed: int
) -> tuple[int, float]:
    """Send transactions for `seconds` from `concurrency` workers; return batches and time."""
    rng = random.Random(seed)
    pool = [workload("sess-bench", f"t{seed}-{i}", rng) for i in range(64)]
    metadata = (("authorization", f"Bearer {token}"),)
    sent = 0
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        deadline = time.perf_counter() + seconds

        async def worker(number: int) -> None:
            nonlocal sent
            round_ = 0
            while time.perf_counter() < deadline:
                template = pool[(number + round_) % len(pool)]
                txn = f"w{number}-r{round_}-{uuid.uuid4().hex[:6]}"
                for batch in template:
                    request = ingest_pb2.SubmitBatchRequest()
                    request.batch.CopyFrom(batch)
                    request.batch.transaction_id = txn
                    request.batch.batch_id = f"{txn}-{batch.sequence}"
                    await stub.SubmitBatch(request, metadata=metadata)
                    sent += 1
                round_ += 1

        # One untimed transaction per worker warms connections and caches.
        start = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        elapsed = time.perf_counter() - start
    return sent, elapsed


# -- orchestration -------------------------------------------------------------------------


def _spawn(kind: str, port: int, env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "serve", kind, "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise SystemExit(f"the {kind} server did not start")
    return proc


def _client(port: int, token: str, seconds: float, concurrency: int) -> tuple[int, float]:
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "client",
            "--port",
            str(port),
            "--token",
            token,
            "--seconds",
            str(seconds),
            "--concurrency",
            str(concurrency),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the benchmark client failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return int(result["batches"]), float(result["seconds"])


@dataclass(frozen=True)
class BenchRun:
    """What one run writes to the stack, each name its own so that it can be removed."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def topics(self) -> KafkaTopicSettings:
        """The run's topics."""
        return KafkaTopicSettings(prefix=f"bench-ingest-{self.tag}-")

    @property
    def redis_prefix(self) -> str:
        """The prefix of the run's Redis keys (buffers, indexes, rate limits)."""
        return f"benchingest{self.tag}:"


def _dsn(stack: StackSettings) -> str:
    return (
        f"postgresql://{stack.postgres_user}@{stack.host}:{stack.postgres_port}/{stack.postgres_db}"
    )


async def _prepare(stack: StackSettings, run: BenchRun) -> tuple[str, str, dict[str, str]]:
    """Create the run's organization and topics; return its id, a token and the server env."""
    pool = await asyncpg.create_pool(_dsn(stack), min_size=1, max_size=2)
    org = await OrganizationStore(pool).create(f"bench-ingest-{run.tag}")
    await pool.close()
    await ensure_topics(f"{stack.host}:{stack.kafka_port}", run.topics)
    token, _ = SessionTokens(SIGNING.encode()).issue(org, "sess-bench", None, None)
    env = {
        "RASED_INGESTION_REDIS_URL": f"redis://{stack.host}:{stack.redis_port}/0",
        "RASED_INGESTION_REDIS_KEY_PREFIX": run.redis_prefix,
        "RASED_INGESTION_POSTGRES_DSN": _dsn(stack),
        "RASED_INGESTION_KAFKA_BOOTSTRAP_SERVERS": f"{stack.host}:{stack.kafka_port}",
        "RASED_INGESTION_SESSION_TOKEN_SECRET": SIGNING,
        "RASED_INGESTION_MASTER_KEYS": MASTER,
        "RASED_INGESTION_RATE_LIMIT_PER_ORGANIZATION": "1000000/second",
        "RASED_INGESTION_RATE_LIMIT_PER_SESSION": "1000000/second",
        TOPIC_PREFIX_VARIABLE: run.topics.prefix,
    }
    return org, token, env


async def _cleanup(stack: StackSettings, run: BenchRun, org: str) -> None:
    """Remove what the run wrote: each step on its own, so one failing skips no other."""
    print(f"cleaning up run {run.tag}", flush=True)
    with warn_on_failure("the organization"):
        pool = await asyncpg.create_pool(_dsn(stack), min_size=1, max_size=1)
        try:
            await drop_organizations(pool, [org])
        finally:
            await pool.close()
    with warn_on_failure("the Kafka topics"):
        names = [spec.name for spec in run.topics.specs()]
        await drop_topics(f"{stack.host}:{stack.kafka_port}", names)
    with warn_on_failure("the Redis keys"):
        await drop_redis_keys(f"redis://{stack.host}:{stack.redis_port}/0", run.redis_prefix)


def run_benchmark(seconds: float, concurrency: int, rounds: int, report: Path | None) -> None:
    """Measure both servers `rounds` times, alternating, and print (and record) the figures."""
    stack = StackSettings()
    run = BenchRun()
    org, token, env = asyncio.run(_prepare(stack, run))
    try:
        found = _measure(token, env, seconds, concurrency, rounds)
    finally:
        asyncio.run(_cleanup(stack, run, org))
    _summarize(found, seconds, concurrency, rounds, report)


@dataclass
class Measurements:
    """Per server kind: batches per second, and the server's CPU seconds per batch."""

    rates: dict[str, list[float]] = field(default_factory=dict)
    cpu_per_batch: dict[str, list[float]] = field(default_factory=dict)

    def add(self, kind: str, rate: float, cpu_per_batch: float) -> None:
        """Record one run."""
        self.rates.setdefault(kind, []).append(rate)
        self.cpu_per_batch.setdefault(kind, []).append(cpu_per_batch)


KINDS = (("noop", 50161), ("framework", 50163), ("ingestion", 50162))


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux: /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(
    token: str, env: dict[str, str], seconds: float, concurrency: int, rounds: int
) -> Measurements:
    """Run each server `rounds` times, alternating; return the rates and CPU of each."""
    found = Measurements()
    for round_ in range(rounds):
        for kind, port in KINDS:
            server = _spawn(kind, port, env)
            try:
                _client(port, token, 2.0, concurrency)  # warm-up, not counted
                cpu_before = _cpu_seconds(server.pid)
                batches, elapsed = _client(port, token, seconds, concurrency)
                cpu = _cpu_seconds(server.pid) - cpu_before
            finally:
                server.terminate()
                server.wait(timeout=30)
            rate = batches / elapsed
            found.add(kind, rate, cpu / batches)
            print(
                f"round {round_ + 1}/{rounds} {kind:<9} {batches:6d} batches in "
                f"{elapsed:5.1f} s = {rate:8.1f} batches/s, server CPU "
                f"{cpu / batches * 1e6:6.0f} us/batch",
                flush=True,
            )
    return found


def _summarize(
    found: Measurements,
    seconds: float,
    concurrency: int,
    rounds: int,
    report: Path | None,
) -> None:
    """Print the medians and ratios; write them into the report."""
    rates, cpu = found.rates, found.cpu_per_batch
    ratio = _median(rates["ingestion"]) / _median(rates["noop"])
    cpu_ratio = _median(cpu["noop"]) / _median(cpu["ingestion"])
    for kind, label in (
        ("noop", "no-op servicer"),
        ("framework", "no-op servicer in Rased's server bootstrap"),
        ("ingestion", "full ingestion"),
    ):
        print(
            f"{label}: {_median(rates[kind]):.1f} batches/s, server CPU "
            f"{_median(cpu[kind]) * 1e6:.0f} us/batch (medians of {rounds})"
        )
    print(f"ratio: {ratio:.2f} (goal >= 0.70); server CPU ratio (no-op / full): {cpu_ratio:.2f}")
    if report is not None:
        _write_report(report, found, ratio, cpu_ratio, seconds, concurrency, rounds)


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


_LABELS = {
    "noop": "no-op grpc.aio servicer (same proto, same client)",
    "framework": "the same no-op servicer inside Rased's server bootstrap (correlation, "
    "metrics, error and validation interceptors, health)",
    "ingestion": "full path: auth (session JWT), rate limits, size checks, protovalidate, "
    "Redis append, Kafka flush, pending-status marks",
}


def _write_report(
    report: Path,
    found: Measurements,
    ratio: float,
    cpu_ratio: float,
    seconds: float,
    concurrency: int,
    rounds: int,
) -> None:
    rows = [
        f"| {_LABELS[kind]} | {_median(found.rates[kind]):.0f} | "
        + ", ".join(f"{r:.0f}" for r in found.rates[kind])
        + f" | {_median(found.cpu_per_batch[kind]) * 1e6:.0f} |"
        for kind, _ in KINDS
    ]
    section = "\n".join(
        [
            "## Ingestion: batches per second (bench/ingest.py)",
            "",
            f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()} (load average "
            f"{os.getloadavg()[0]:.1f} at the end: the machine is shared); "
            f"{concurrency} concurrent client calls, {seconds:.0f} s per run, "
            f"{rounds} alternating runs per server, median shown. One server process at a "
            "time; client, Redis and Kafka share the same cores. Server CPU is the server "
            "process's user + system time over the timed run, per batch: it depends less on "
            "what else the machine runs than the rates do.",
            "",
            "| server | batches/s | runs | server CPU µs per batch |",
            "|---|---|---|---|",
            *rows,
            "",
            f"**Ratio: {ratio:.2f}** (goal: at least 0.70). Server CPU per batch, no-op over "
            f"full path: {cpu_ratio:.2f}.",
            "",
        ]
    )
    text = report.read_text() if report.exists() else "# Benchmarks\n\n"
    marker = "## Ingestion: batches per second"
    if marker in text:
        head, _, rest = text.partition(marker)
        tail = rest.split("\n## ", 1)
        text = head + section + ("\n## " + tail[1] if len(tail) > 1 else "")
    else:
        text = text.rstrip() + "\n\n" + section
    report.write_text(text)
    print(f"figures written to {report}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, or (internally) one of its server or client processes."""
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("--seconds", type=float, default=10.0)
    run.add_argument("--concurrency", type=int, default=32)
    run.add_argument("--rounds", type=int, default=3)
    run.add_argument("--report", type=Path, default=repository_root() / "docs/benchmarks.md")
    serve = sub.add_parser("serve")
    serve.add_argument("kind", choices=["noop", "framework", "ingestion"])
    serve.add_argument("--port", type=int, required=True)
    client = sub.add_parser("client")
    client.add_argument("--port", type=int, required=True)
    client.add_argument("--token", required=True)
    client.add_argument("--seconds", type=float, required=True)
    client.add_argument("--concurrency", type=int, required=True)
    options = parser.parse_args(argv)
    if options.command == "serve":
        runner = {"noop": serve_noop, "framework": serve_framework}.get(
            options.kind, serve_ingestion
        )
        asyncio.run(runner(options.port))
    elif options.command == "client":
        batches, elapsed = asyncio.run(
            drive(options.port, options.token, options.seconds, options.concurrency, seed=7)
        )
        print(json.dumps({"batches": batches, "seconds": elapsed}))
    else:
        run_benchmark(options.seconds, options.concurrency, options.rounds, options.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
