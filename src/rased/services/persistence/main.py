"""Composition root of `rased-persistence`: data_persistence -> Cassandra, health over gRPC."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack

import asyncpg
from aiokafka import AIOKafkaConsumer
from cassandra import ConsistencyLevel
from grpc import aio
from grpc_health.v1 import health_pb2
from pydantic import ValidationError

from rased.adapters.cassandra.data_keys import CassandraDataKeys
from rased.adapters.cassandra.event_store import CassandraEventStore
from rased.adapters.cassandra.session import cassandra_session
from rased.adapters.kafka.topics import KafkaTopicSettings, Topic
from rased.adapters.postgres.retention import PostgresRetention
from rased.common.background import BackgroundLoops
from rased.common.backoff import Backoff
from rased.common.crypto import MasterKeyring
from rased.common.logging import configure_logging
from rased.common.server import GrpcServer, ServiceHooks, serve
from rased.services.persistence.consuming import persistence_loop
from rased.services.persistence.persisting import TransactionPersister
from rased.services.persistence.settings import PersistenceSettings

logger = logging.getLogger(__name__)


def build_consumer(settings: PersistenceSettings, topics: KafkaTopicSettings) -> AIOKafkaConsumer:
    """Return the group consumer: manual commits, from the earliest offset for a new group."""
    return AIOKafkaConsumer(
        topics.topic_name(Topic.DATA_PERSISTENCE),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.consumer_group,
        client_id=settings.service_name,
        # Offsets are committed by the loop only after the rows are written.
        enable_auto_commit=False,
        # A new group (first deployment) stores what the topic still holds, not only news.
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=settings.max_partition_fetch_bytes,
        fetch_max_bytes=max(settings.max_partition_fetch_bytes, 52_428_800),
    )


async def build_server(
    settings: PersistenceSettings, topics: KafkaTopicSettings | None = None
) -> GrpcServer:
    """Connect the adapters, start consuming, and return the (not yet started) gRPC server."""
    resources = AsyncExitStack()
    try:
        session = await resources.enter_async_context(
            cassandra_session(
                settings.cassandra_contact_points,
                settings.cassandra_port,
                settings.cassandra_keyspace,
                request_timeout_s=settings.cassandra_request_timeout.total_seconds(),
                consistency=ConsistencyLevel.LOCAL_QUORUM,
                max_reconnect_delay_s=settings.cassandra_max_reconnect_delay.total_seconds(),
            )
        )
        pool = await asyncpg.create_pool(settings.postgres_dsn, min_size=1, max_size=4)
        resources.push_async_callback(pool.close)
        cache_ttl = settings.org_cache_ttl.total_seconds()
        persister = TransactionPersister(
            await CassandraEventStore.prepare(session, settings.cassandra_max_in_flight),
            CassandraDataKeys(
                session,
                MasterKeyring.from_spec(settings.master_keys.get_secret_value()),
                cache_ttl_s=cache_ttl,
            ),
            PostgresRetention(pool, settings.default_retention_days, cache_ttl_s=cache_ttl),
        )
        consumer = build_consumer(settings, topics or KafkaTopicSettings())
        await consumer.start()
        resources.push_async_callback(consumer.stop)
    except BaseException:
        await resources.aclose()
        raise

    loop = persistence_loop(
        consumer,
        persister,
        Backoff(
            settings.retry_initial_backoff.total_seconds(),
            settings.retry_max_backoff.total_seconds(),
        ),
        max_records=settings.max_poll_records,
    )

    async def not_serving() -> None:
        # A worker whose loop died consumes nothing: a probe should restart it.
        await server.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)

    # The loop finishes the poll in hand (writes, then commit) and returns; a poll stuck on
    # an unavailable store gives up uncommitted. Bounded by the grace period.
    background = BackgroundLoops(settings.shutdown_grace, on_failure=not_serving)
    background.start("persistence-loop", loop)

    async def close() -> None:
        # Leaving the group (consumer.stop) hands the partitions over at once.
        await resources.aclose()

    def register(grpc_server: aio.Server) -> Sequence[str]:
        # A worker serves no API: only grpc.health (added by GrpcServer) for probes.
        return []

    server = GrpcServer(
        settings, register, ServiceHooks(stop_taking_work=[background.stop], close=[close])
    )
    return server


async def _run(settings: PersistenceSettings) -> None:
    server = await build_server(settings)
    await serve(server)


def main() -> int:
    """Run the persistence worker until SIGTERM or SIGINT."""
    try:
        settings = PersistenceSettings()  # type: ignore[call-arg]  # read from the environment
    except ValidationError as error:
        print(f"rased-persistence: invalid settings:\n{error}", file=sys.stderr)
        return 2
    configure_logging(settings.service_name, settings.log_level)
    asyncio.run(_run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
