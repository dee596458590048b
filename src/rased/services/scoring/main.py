"""Composition root of `rased-scoring`: ai_processing -> Triton -> PostgreSQL -> notifications."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

import asyncpg
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer
from grpc import aio
from grpc_health.v1 import health_pb2
from pydantic import ValidationError

from rased.adapters.kafka.event_bus import KafkaEventBus
from rased.adapters.kafka.topics import KafkaTopicSettings, Topic
from rased.adapters.postgres.results import PostgresPendingTransactions, PostgresResultStore
from rased.adapters.redis.profiles import RedisProfileStore
from rased.adapters.triton.model_client import TritonModelClient
from rased.common.background import BackgroundLoops
from rased.common.backoff import Backoff
from rased.common.logging import configure_logging
from rased.common.server import GrpcServer, ServiceHooks, serve
from rased.services.scoring.breaker import CircuitBreaker
from rased.services.scoring.consuming import ScoringLoop
from rased.services.scoring.ports import ModelClient
from rased.services.scoring.scoring import Scorer
from rased.services.scoring.settings import ScoringSettings
from rased.v1 import pipeline_pb2, scoring_pb2

logger = logging.getLogger(__name__)

EVENT_TYPE = "transaction.scored"


class KafkaResultNotifier:
    """`ResultNotifier` on the event bus's client_notification topic."""

    def __init__(self, bus: KafkaEventBus) -> None:
        self._bus = bus

    async def notify(self, result: scoring_pb2.TransactionResult) -> None:
        """Publish the stored result as a `transaction.scored` notification."""
        await self._bus.publish_notification(
            pipeline_pb2.ResultNotification(event_type=EVENT_TYPE, result=result)
        )


@dataclass(frozen=True)
class ScoringWorker:
    """The (not yet started) health server and the pieces a probe or test looks at."""

    server: GrpcServer
    scorer: Scorer


def build_consumer(settings: ScoringSettings, topics: KafkaTopicSettings) -> AIOKafkaConsumer:
    """Return the group consumer: manual commits, from the earliest offset for a new group."""
    return AIOKafkaConsumer(
        topics.topic_name(Topic.AI_PROCESSING),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.consumer_group,
        client_id=settings.service_name,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=settings.max_partition_fetch_bytes,
        fetch_max_bytes=max(settings.max_partition_fetch_bytes, 52_428_800),
    )


def _fallback(settings: ScoringSettings) -> ModelClient | None:
    if not settings.degraded_fallback:
        return None
    from rased.adapters.onnx.model_client import OnnxModelClient

    # Loaded at start-up: a missing or mismatched file fails the worker now, not mid-outage.
    return OnnxModelClient(
        settings.onnx_model_path,
        settings.model_name,
        settings.session_onnx_model_path,
        settings.session_model_name,
    )


async def build_worker(
    settings: ScoringSettings, topics: KafkaTopicSettings | None = None
) -> ScoringWorker:
    """Connect the adapters, start consuming, and return the worker (server not started)."""
    topics = topics or KafkaTopicSettings()
    resources = AsyncExitStack()
    try:
        pool = await asyncpg.create_pool(settings.postgres_dsn, min_size=1, max_size=8)
        resources.push_async_callback(pool.close)
        redis = aioredis.Redis.from_url(settings.redis_url)
        resources.push_async_callback(redis.aclose)
        bus = KafkaEventBus(settings.kafka_bootstrap_servers, topics, client_id="rased-scoring")
        await bus.start()
        resources.push_async_callback(bus.close)
        model = TritonModelClient(
            settings.triton_url,
            settings.model_name,
            timeout_s=settings.triton_timeout.total_seconds(),
            attempts=settings.triton_attempts,
            session_model_name=settings.session_model_name,
        )
        resources.push_async_callback(model.close)
        scorer = Scorer(
            model,
            CircuitBreaker(
                settings.breaker_failure_threshold,
                settings.breaker_reset_timeout.total_seconds(),
            ),
            RedisProfileStore(redis, settings.redis_key_prefix, settings.profile_ttl),
            PostgresResultStore(pool),
            PostgresPendingTransactions(pool),
            KafkaResultNotifier(bus),
            fallback=_fallback(settings),
        )
        consumer = build_consumer(settings, topics)
        await consumer.start()
        resources.push_async_callback(consumer.stop)
    except BaseException:
        await resources.aclose()
        raise

    loop = ScoringLoop(
        consumer,
        scorer,
        Backoff(
            settings.retry_initial_backoff.total_seconds(),
            settings.retry_max_backoff.total_seconds(),
        ),
        max_records=settings.max_poll_records,
    )

    async def not_serving() -> None:
        # A worker whose loop died consumes nothing: a probe should restart it.
        await server.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)

    # The loop finishes the batch in hand (score, store, announce, commit) and returns; a
    # batch waiting for Triton gives up uncommitted. Bounded by the grace period.
    background = BackgroundLoops(settings.shutdown_grace, on_failure=not_serving)
    background.start("scoring-loop", loop)

    async def close() -> None:
        await resources.aclose()

    def register(grpc_server: aio.Server) -> Sequence[str]:
        # A worker serves no API: only grpc.health (added by GrpcServer) for probes.
        return []

    server = GrpcServer(
        settings, register, ServiceHooks(stop_taking_work=[background.stop], close=[close])
    )
    return ScoringWorker(server, scorer)


async def build_server(
    settings: ScoringSettings, topics: KafkaTopicSettings | None = None
) -> GrpcServer:
    """Return the worker's (not yet started) health server, consuming already."""
    return (await build_worker(settings, topics)).server


async def _run(settings: ScoringSettings) -> None:
    await serve(await build_server(settings))


def main() -> int:
    """Run the scoring worker until SIGTERM or SIGINT."""
    try:
        settings = ScoringSettings()
    except ValidationError as error:
        print(f"rased-scoring: invalid settings:\n{error}", file=sys.stderr)
        return 2
    configure_logging(settings.service_name, settings.log_level)
    asyncio.run(_run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
