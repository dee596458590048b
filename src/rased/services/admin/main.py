"""Composition root of `rased-admin`: AdminService in one process."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import asyncpg
from grpc import aio
from pydantic import ValidationError

from rased.adapters.postgres.audit import AuditLog
from rased.adapters.postgres.keys import ApiKeyStore, EncryptionKeyStore, OrganizationStore
from rased.adapters.postgres.organizations import KeyLifecycle, OrganizationDirectory
from rased.adapters.postgres.webhook_deliveries import WebhookDeliveryStore
from rased.adapters.postgres.webhooks import WebhookEndpointStore
from rased.common.crypto import MasterKeyring
from rased.common.logging import configure_logging
from rased.common.server import GrpcServer, ServiceHooks, serve
from rased.services.admin.access import AccessControl, AdminAuthenticator
from rased.services.admin.administration import Administration, Paging
from rased.services.admin.servicer import AdminServicer
from rased.services.admin.settings import AdminSettings
from rased.services.admin.webhook_deliveries import WebhookDeliveries
from rased.services.admin.webhook_endpoints import WebhookEndpoints
from rased.v1 import admin_pb2_grpc


async def build_server(settings: AdminSettings) -> GrpcServer:
    """Connect the adapters and return the (not yet started) gRPC server."""
    pool = await asyncpg.create_pool(settings.postgres_dsn, min_size=1, max_size=5)
    keyring = MasterKeyring.from_spec(settings.master_keys.get_secret_value())
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

    async def close() -> None:
        await pool.close()

    def register(server: aio.Server) -> Sequence[str]:
        admin_pb2_grpc.add_AdminServiceServicer_to_server(
            AdminServicer(administration, webhooks, deliveries), server
        )
        return ["rased.v1.AdminService"]

    return GrpcServer(settings, register, ServiceHooks(close=[close]))


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
