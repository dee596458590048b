"""An in-process admin service on a migrated PostgreSQL database, for the tests that call it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
from grpc import aio
from pydantic import SecretStr

from rased.services.admin.main import build_server
from rased.services.admin.settings import AdminSettings
from rased.v1 import admin_pb2_grpc


@dataclass(frozen=True)
class AdminServer:
    """A running admin service: its port, a client on it, and a pool on its database."""

    port: int
    stub: admin_pb2_grpc.AdminServiceAsyncStub
    pool: asyncpg.Pool


@asynccontextmanager
async def running_admin(
    dsn: str, master_keys: str, operator_token: str
) -> AsyncIterator[AdminServer]:
    """Run the admin service on port 0 over the database `dsn`; stop it, at once, after."""
    settings = AdminSettings(
        grpc_port=0,
        postgres_dsn=dsn,
        master_keys=SecretStr(master_keys),
        operator_token=SecretStr(operator_token),
        shutdown_drain=timedelta(0),
        shutdown_grace=timedelta(seconds=1),
    )
    async with AsyncExitStack() as resources:
        server = await build_server(settings)
        resources.push_async_callback(server.shutdown)
        port = await server.start()
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        resources.push_async_callback(pool.close)
        channel = aio.insecure_channel(f"127.0.0.1:{port}")
        resources.push_async_callback(channel.close)
        yield AdminServer(port, admin_pb2_grpc.AdminServiceStub(channel), pool)
