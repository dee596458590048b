"""Composition root of `rased-admin`: AdminService and its erasure runner in one process."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack

import asyncpg
import redis.asyncio as aioredis
from grpc import aio
from pydantic import ValidationError

from rased.adapters.cassandra.erasure import CassandraSubjectData
from rased.adapters.postgres.audit import AuditLog
from rased.adapters.postgres.erasure import ErasureJobStore, PostgresSubjectData
from rased.adapters.postgres.keys import ApiKeyStore, EncryptionKeyStore, OrganizationStore
from rased.adapters.postgres.organizations import KeyLifecycle, OrganizationDirectory
from rased.adapters.postgres.webhook_deliveries import WebhookDeliveryStore
from rased.adapters.postgres.webhooks import WebhookEndpointStore
from rased.adapters.redis.erasure import RedisSubjectData
from rased.common.background import BackgroundLoops
from rased.common.crypto import MasterKeyring
from rased.common.logging import configure_logging
from rased.common.server import GrpcServer, ServiceHooks, serve
from rased.services.admin.access import AccessControl, AdminAuthenticator
from rased.services.admin.administration import Administration, Paging
from rased.services.admin.erasure import ErasureRunner, Erasures, SubjectEraser
from rased.services.admin.servicer import AdminServicer
from rased.services.admin.settings import AdminSettings
from rased.services.admin.webhook_deliveries import WebhookDeliveries
from rased.services.admin.webhook_endpoints import WebhookEndpoints
from rased.v1 import admin_pb2_grpc

logger = logging.getLogger(__name__)


async def build_server(settings: AdminSettings) -> GrpcServer:
    """Connect the adapters, start the erasure runner and return the (not yet started) server."""
    # Parsed first: nothing after the pool is made can fail before close() owns it.
    keyring = MasterKeyring.from_spec(settings.master_keys.get_secret_value())
    resources = AsyncExitStack()
    pool = await asyncpg.create_pool(settings.postgres_dsn, min_size=1, max_size=5)
    resources.push_async_callback(pool.close)
    # Redis and Cassandra connect on first use: the admin API works while they are down,
    # and erasure jobs fail and are retried until they are back.
    redis = aioredis.Redis.from_url(settings.redis_url)
    resources.push_async_callback(redis.aclose)
    cassandra = CassandraSubjectData(
        settings.cassandra_contact_points,
        settings.cassandra_port,
        settings.cassandra_keyspace,
        request_timeout_s=settings.cassandra_request_timeout.total_seconds(),
    )
    resources.push_async_callback(cassandra.close)
    api_keys = ApiKeyStore(pool)
    audit = AuditLog(pool)
    directory = OrganizationDirectory(pool)
    access = AccessControl(
        AdminAuthenticator(api_keys, settings.operator_token.get_secret_value()), audit
    )
    paging = Paging(settings.page_size_default, settings.page_size_max)
    administration = Administration(
        access,
        OrganizationStore(pool),
        directory,
        api_keys,
        KeyLifecycle(pool),
        EncryptionKeyStore(pool, keyring),
        audit,
        default_retention_days=settings.default_retention_days,
        default_overlap=settings.default_key_overlap,
        paging=paging,
    )
    webhooks = WebhookEndpoints(
        access, directory, WebhookEndpointStore(pool, keyring), settings.default_key_overlap
    )
    deliveries = WebhookDeliveries(access, directory, WebhookDeliveryStore(pool), paging)
    jobs = ErasureJobStore(pool)
    eraser = SubjectEraser(
        jobs,
        PostgresSubjectData(pool),
        cassandra,
        RedisSubjectData(redis, settings.redis_buffer_prefix, settings.redis_profile_prefix),
    )
    runner = ErasureRunner(jobs, eraser, settings.erasure_policy())
    erasures = Erasures(access, directory, jobs, runner)

    # The runner finishes the job in hand and returns. A job cut off at the grace period stays
    # claimed until its lease runs out, then any runner takes it up again. A runner that dies
    # (a bug: run() survives store outages) is logged; the admin API keeps serving.
    background = BackgroundLoops(settings.shutdown_grace)
    background.start("erasure-runner", runner)

    async def close() -> None:
        await resources.aclose()

    def register(server: aio.Server) -> Sequence[str]:
        admin_pb2_grpc.add_AdminServiceServicer_to_server(
            AdminServicer(administration, webhooks, deliveries, erasures), server
        )
        return ["rased.v1.AdminService"]

    return GrpcServer(
        settings, register, ServiceHooks(stop_taking_work=[background.stop], close=[close])
    )


async def _run(settings: AdminSettings) -> None:
    await serve(await build_server(settings))


def main() -> int:
    """Run the admin service until SIGTERM or SIGINT."""
    try:
        settings = AdminSettings()  # type: ignore[call-arg]  # read from the environment
    except ValidationError as error:
        print(f"rased-admin: invalid settings:\n{error}", file=sys.stderr)
        return 2
    configure_logging(settings.service_name, settings.log_level)
    asyncio.run(_run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
