"""Composition root of `rased-ingestion`: IngestService and SessionService in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence

import asyncpg
import redis.asyncio as aioredis
from grpc import aio
from pydantic import ValidationError
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from rased.adapters.kafka.event_bus import KafkaEventBus
from rased.adapters.kafka.topics import KafkaTopicSettings
from rased.adapters.postgres.keys import ApiKeyStore, EncryptionKeyStore
from rased.adapters.postgres.results import PostgresPendingTransactions
from rased.adapters.postgres.status_marks import CoalescedStatusMarks
from rased.adapters.redis.event_buffer import RedisEventBuffer
from rased.adapters.redis.rate_limits import RATE_LIMIT_PREFIX, RedisRateLimits
from rased.common.crypto import MasterKeyring
from rased.common.logging import configure_logging
from rased.common.server import GrpcServer, ServiceHooks, serve
from rased.services.ingestion.auth import TokenAuthenticator
from rased.services.ingestion.buffering import TransactionBuffering
from rased.services.ingestion.intake import BatchIntake, IntakeLimits
from rased.services.ingestion.jwe import OrgKeyDecryptor
from rased.services.ingestion.servicer import SELF_VALIDATED, IngestServicer, SessionServicer
from rased.services.ingestion.sessions import SessionTokens
from rased.services.ingestion.settings import IngestionSettings
from rased.v1 import ingest_pb2_grpc, session_pb2_grpc

logger = logging.getLogger(__name__)


async def build_server(
    settings: IngestionSettings, topics: KafkaTopicSettings | None = None
) -> GrpcServer:
    """Connect the adapters and return the (not yet started) gRPC server."""
    # A blocking pool waits for a free connection under bursts instead of failing, and
    # retries a dropped connection with jittered backoff (the buffer's scripts are
    # idempotent, so a resent command is safe).
    redis = aioredis.Redis(
        connection_pool=aioredis.BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=64,
            timeout=5,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=5),
        )
    )
    pool = await asyncpg.create_pool(settings.postgres_dsn, min_size=1, max_size=10)
    bus = KafkaEventBus(
        settings.kafka_bootstrap_servers,
        topics or KafkaTopicSettings(),
        client_id=settings.service_name,
    )
    await bus.start()
    tokens = SessionTokens(
        settings.session_token_secret.get_secret_value().encode(),
        previous_keys=[
            s.get_secret_value().encode() for s in settings.previous_session_token_secrets
        ],
        default_ttl=settings.session_token_ttl,
        max_ttl=settings.session_token_max_ttl,
    )
    authenticator = TokenAuthenticator(ApiKeyStore(pool), tokens, settings.key_cache_ttl)
    keyring = MasterKeyring.from_spec(settings.master_keys.get_secret_value())
    decryptor = OrgKeyDecryptor(
        EncryptionKeyStore(pool, keyring),
        # Base64url makes the compact JWE about 4/3 of the batch it carries.
        max_ciphertext_bytes=settings.max_batch_bytes * 4 // 3 + 4096,
        key_cache_ttl=settings.encryption_key_cache_ttl,
    )
    policy = settings.buffer_policy()
    buffering = TransactionBuffering(
        RedisEventBuffer(redis, policy, key_prefix=settings.redis_key_prefix), bus, policy
    )
    intake = BatchIntake(
        authenticator,
        decryptor,
        buffering,
        bus,
        RedisRateLimits(
            redis,
            settings.rate_limit_per_organization,
            settings.rate_limit_per_session,
            key_prefix=settings.redis_key_prefix + RATE_LIMIT_PREFIX,
        ),
        IntakeLimits(
            max_batch_bytes=settings.max_batch_bytes,
            max_events_per_batch=settings.max_events_per_batch,
            max_event_bytes=settings.max_event_bytes,
            kafka_max_message_bytes=settings.kafka_max_message_bytes,
        ),
        statuses=CoalescedStatusMarks(PostgresPendingTransactions(pool)),
    )

    stop_sweeping = asyncio.Event()
    sweeper = asyncio.create_task(buffering.run(stop_sweeping), name="buffer-sweeper")

    async def stop_taking_work() -> None:
        stop_sweeping.set()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper

    async def close() -> None:
        # In-flight calls have finished; flushes they started complete before Kafka closes.
        await buffering.drain()
        await bus.close()
        await redis.aclose()
        await pool.close()

    def register(server: aio.Server) -> Sequence[str]:
        ingest_pb2_grpc.add_IngestServiceServicer_to_server(IngestServicer(intake), server)
        session_pb2_grpc.add_SessionServiceServicer_to_server(
            SessionServicer(authenticator, tokens), server
        )
        return ["rased.v1.IngestService", "rased.v1.SessionService"]

    return GrpcServer(
        settings,
        register,
        ServiceHooks(stop_taking_work=[stop_taking_work], close=[close]),
        self_validated_methods=SELF_VALIDATED,
    )


async def _run(settings: IngestionSettings) -> None:
    server = await build_server(settings)
    await serve(server)


def main() -> int:
    """Run the ingestion service until SIGTERM or SIGINT."""
    try:
        settings = IngestionSettings()  # type: ignore[call-arg]  # read from the environment
    except ValidationError as error:
        print(f"rased-ingestion: invalid settings:\n{error}", file=sys.stderr)
        return 2
    configure_logging(settings.service_name, settings.log_level)
    asyncio.run(_run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
