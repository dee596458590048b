"""Composition root of `rased-results`: ResultsService over PostgreSQL."""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import Sequence

import asyncpg
from grpc import aio
from pydantic import ValidationError

from rased.adapters.postgres.keys import ApiKeyStore
from rased.adapters.postgres.results import (
    PostgresPendingTransactions,
    PostgresResultNotifications,
    PostgresResultStore,
)
from rased.common.logging import configure_logging
from rased.common.server import GrpcServer, ServiceHooks, serve
from rased.services.ingestion.auth import TokenAuthenticator
from rased.services.ingestion.sessions import SessionTokens
from rased.services.results.domain import Results
from rased.services.results.servicer import ResultsServicer
from rased.services.results.settings import ResultsSettings
from rased.v1 import results_pb2_grpc


async def build_server(settings: ResultsSettings) -> GrpcServer:
    """Connect the adapters and return the (not yet started) gRPC server."""
    pool = await asyncpg.create_pool(
        settings.postgres_dsn, min_size=1, max_size=settings.postgres_pool_size
    )
    notifications = PostgresResultNotifications(
        settings.postgres_dsn, check_interval=settings.listen_check_interval
    )
    await notifications.start()
    # Only secret keys are accepted here (authenticate_secret refuses everything else before
    # looking at tokens), so the token verifier gets a throwaway key and never verifies one.
    authenticator = TokenAuthenticator(
        ApiKeyStore(pool), SessionTokens(secrets.token_bytes(32)), settings.key_cache_ttl
    )
    results = Results(
        PostgresResultStore(pool),
        PostgresPendingTransactions(pool, settings.pending_max_age),
        notifications,
        poll_interval=settings.watch_poll_interval,
        batch_size=settings.watch_batch_size,
    )

    async def stop_streams() -> None:
        # Open streams end cleanly instead of being cut off when the grace period runs out.
        results.close()

    async def close() -> None:
        await notifications.close()
        await pool.close()

    def register(server: aio.Server) -> Sequence[str]:
        results_pb2_grpc.add_ResultsServiceServicer_to_server(
            ResultsServicer(authenticator, results), server
        )
        return ["rased.v1.ResultsService"]

    return GrpcServer(
        settings, register, ServiceHooks(stop_taking_work=[stop_streams], close=[close])
    )


async def _run(settings: ResultsSettings) -> None:
    server = await build_server(settings)
    await serve(server)


def main() -> int:
    """Run the results service until SIGTERM or SIGINT."""
    try:
        settings = ResultsSettings()
    except ValidationError as error:
        print(f"rased-results: invalid settings:\n{error}", file=sys.stderr)
        return 2
    configure_logging(settings.service_name, settings.log_level)
    asyncio.run(_run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
