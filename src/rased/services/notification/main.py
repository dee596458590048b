"""Composition root of `rased-notification`: client_notification -> webhooks, health over gRPC."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack

import asyncpg
from aiokafka import AIOKafkaConsumer
from grpc import aio
from grpc_health.v1 import health_pb2
from pydantic import ValidationError

from rased.adapters.kafka.consumer import CommitAfterEffectLoop
from rased.adapters.kafka.topics import KafkaTopicSettings, Topic
from rased.adapters.postgres.webhook_deliveries import WebhookDeliveryStore
from rased.adapters.postgres.webhooks import WebhookEndpointStore
from rased.common.background import BackgroundLoops
from rased.common.backoff import Backoff
from rased.common.crypto import MasterKeyring
from rased.common.logging import configure_logging
from rased.common.server import GrpcServer, ServiceHooks, serve
from rased.services.notification.intake import DeliveryIntake
from rased.services.notification.scheduling import DeliveryScheduler, RetrySchedule
from rased.services.notification.sender import WebhookSender
from rased.services.notification.settings import NotificationSettings

logger = logging.getLogger(__name__)


def build_consumer(settings: NotificationSettings, topics: KafkaTopicSettings) -> AIOKafkaConsumer:
    """Return the group consumer: manual commits, from the earliest offset for a new group."""
    return AIOKafkaConsumer(
        topics.topic_name(Topic.CLIENT_NOTIFICATION),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.consumer_group,
        client_id=settings.service_name,
        # Offsets are committed by the loop only after the deliveries are written.
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


async def build_server(
    settings: NotificationSettings, topics: KafkaTopicSettings | None = None
) -> GrpcServer:
    """Connect the adapters, start consuming and scheduling, return the gRPC server."""
    resources = AsyncExitStack()
    sender = WebhookSender(settings.request_timeout.total_seconds(), settings.max_response_bytes)
    resources.push_async_callback(sender.close)
    try:
        pool = await asyncpg.create_pool(settings.postgres_dsn, min_size=1, max_size=6)
        resources.push_async_callback(pool.close)
        consumer = build_consumer(settings, topics or KafkaTopicSettings())
        await consumer.start()
        resources.push_async_callback(consumer.stop)
    except BaseException:
        await resources.aclose()
        raise

    deliveries = WebhookDeliveryStore(pool)
    keyring = MasterKeyring.from_spec(settings.master_keys.get_secret_value())
    backoff = Backoff(
        settings.retry_initial_backoff.total_seconds(), settings.retry_max_backoff.total_seconds()
    )
    schedule = RetrySchedule(
        settings.retry_schedule, settings.retry_jitter, settings.retry_after_max
    )
    scheduler = DeliveryScheduler(
        deliveries,
        WebhookEndpointStore(pool, keyring),
        sender,
        schedule,
        lease=settings.claim_lease,
        batch=settings.claim_batch,
        poll_interval=settings.poll_interval,
        backoff=backoff,
    )
    intake = DeliveryIntake(deliveries, schedule, on_created=scheduler.wake)
    loop = CommitAfterEffectLoop(
        "notification", consumer, intake.handle, backoff, max_records=settings.max_poll_records
    )

    async def not_serving() -> None:
        # A worker whose loop died does no work: a probe should restart it.
        await server.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)

    # The consumer finishes the poll in hand (writes, then commit); the scheduler records the
    # attempts in flight. What does not finish in time stays in PostgreSQL (a lease that runs
    # out) or uncommitted in Kafka, and is taken up again: nothing is lost.
    background = BackgroundLoops(settings.shutdown_grace, on_failure=not_serving)
    background.start("intake", loop)
    background.start("scheduler", scheduler)

    async def close() -> None:
        await resources.aclose()

    def register(grpc_server: aio.Server) -> Sequence[str]:
        # A worker serves no API: only grpc.health (added by GrpcServer) for probes.
        return []

    server = GrpcServer(
        settings, register, ServiceHooks(stop_taking_work=[background.stop], close=[close])
    )
    return server


async def _run(settings: NotificationSettings) -> None:
    await serve(await build_server(settings))


def main() -> int:
    """Run the notification worker until SIGTERM or SIGINT."""
    try:
        settings = NotificationSettings()  # type: ignore[call-arg]  # read from the environment
    except ValidationError as error:
        print(f"rased-notification: invalid settings:\n{error}", file=sys.stderr)
        return 2
    configure_logging(settings.service_name, settings.log_level)
    asyncio.run(_run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
