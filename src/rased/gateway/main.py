"""Composition root of `rased-gateway`: the local REST edge in front of the gRPC services."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from aiohttp import web
from pydantic import ValidationError

from rased.common.logging import configure_logging
from rased.gateway.app import build_app
from rased.gateway.settings import GatewaySettings

logger = logging.getLogger(__name__)


async def _run(settings: GatewaySettings) -> None:
    runner = web.AppRunner(
        build_app(settings), access_log=logging.getLogger("rased.gateway.access")
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.http_host, settings.http_port)
    await site.start()
    logger.info(
        "gateway listening on %s:%d, upstreams %s",
        settings.http_host,
        settings.http_port,
        settings.upstreams,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        # Stops accepting, lets in-flight requests finish, then closes the upstream channels.
        with contextlib.suppress(asyncio.CancelledError):
            await runner.cleanup()


def main() -> int:
    """Run the REST edge until SIGTERM or SIGINT."""
    try:
        settings = GatewaySettings()
    except ValidationError as error:
        print(f"rased-gateway: invalid settings:\n{error}", file=sys.stderr)
        return 2
    configure_logging(settings.service_name, settings.log_level)
    asyncio.run(_run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
