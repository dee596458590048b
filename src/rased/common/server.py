"""The grpc.aio server bootstrap every Rased service runs on.

One place sets up what each service needs: the interceptor chain (tracing, correlation id,
metrics, error mapping, validation), `grpc.health.v1`, reflection, Prometheus metrics and a
graceful shutdown on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor

from rased.common.interceptors import (
    CorrelationInterceptor,
    ErrorInterceptor,
    MetricsInterceptor,
    ValidationInterceptor,
)
from rased.common.metrics import serve_metrics
from rased.common.settings import ServiceSettings
from rased.common.telemetry import configure_tracing

logger = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]
Registrar = Callable[[aio.Server], Sequence[str]]


@dataclass
class ServiceHooks:
    """What a service does around its gRPC server's life.

    Attributes:
        stop_taking_work: run once shutdown starts (stop consumers, sweepers, timers).
        close: run after in-flight calls finished or the grace period ran out (commit,
            close clients).
    """

    stop_taking_work: list[Hook] = field(default_factory=list)
    close: list[Hook] = field(default_factory=list)


class GrpcServer:
    """A running gRPC server with health, reflection, metrics and graceful shutdown."""

    def __init__(
        self,
        settings: ServiceSettings,
        register: Registrar,
        hooks: ServiceHooks | None = None,
        extra_interceptors: Sequence[aio.ServerInterceptor] = (),
        self_validated_methods: frozenset[str] = frozenset(),
    ) -> None:
        """Prepare a server; `register` adds the servicers and returns their full names.

        `self_validated_methods` ("/pkg.Service/Method") skip the validation interceptor
        because their servicer validates after authenticating.
        """
        self.settings = settings
        self.hooks = hooks or ServiceHooks()
        self.health = health.aio.HealthServicer()
        self.port: int | None = None
        self.metrics_port: int | None = None
        self._register = register
        self._service_names: list[str] = []
        self._server = aio.server(
            interceptors=[
                # Spans cost time on every call; without an exporter nobody reads them.
                *(
                    [aio_server_interceptor()]  # type: ignore[no-untyped-call]
                    if settings.otel_exporter != "none"
                    else []
                ),
                CorrelationInterceptor(),
                MetricsInterceptor(),
                ErrorInterceptor(),
                *extra_interceptors,
                ValidationInterceptor(self_validated=self_validated_methods),
            ],
            options=[
                ("grpc.max_receive_message_length", settings.max_message_bytes),
                ("grpc.max_send_message_length", settings.max_message_bytes),
            ],
        )
        self._shutdown_started = False
        self._stopped = asyncio.Event()

    async def start(self) -> int:
        """Bind, start serving and report SERVING; return the bound port."""
        configure_tracing(self.settings)
        self._service_names = list(self._register(self._server))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        names = [*self._service_names, health.SERVICE_NAME]
        if self.settings.reflection:
            reflection.enable_server_reflection([*names, reflection.SERVICE_NAME], self._server)
        address = f"{self.settings.grpc_host}:{self.settings.grpc_port}"
        self.port = self._server.add_insecure_port(address)
        if self.port == 0:
            raise RuntimeError(f"could not bind the gRPC server to {address}")
        await self._server.start()
        for name in ("", *self._service_names):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self.settings.metrics_port is not None:
            self.metrics_port = serve_metrics(self.settings.grpc_host, self.settings.metrics_port)
        logger.info(
            "%s serving on %s:%d (%s)",
            self.settings.service_name,
            self.settings.grpc_host,
            self.port,
            ", ".join(self._service_names) or "no services",
        )
        return self.port

    async def shutdown(self) -> None:
        """Stop gracefully; safe to call more than once (later calls wait for the first)."""
        if self._shutdown_started:
            await self._stopped.wait()
            return
        self._shutdown_started = True
        logger.info("%s shutting down", self.settings.service_name)
        # NOT_SERVING first, so balancers and clients watching health move away.
        await self.health.enter_graceful_shutdown()
        drain = self.settings.shutdown_drain.total_seconds()
        if drain > 0:
            await asyncio.sleep(drain)
        for hook in self.hooks.stop_taking_work:
            await _run_hook(hook)
        # New calls are refused from here; in-flight ones get the grace period.
        await self._server.stop(self.settings.shutdown_grace.total_seconds())
        for hook in self.hooks.close:
            await _run_hook(hook)
        logger.info("%s stopped", self.settings.service_name)
        self._stopped.set()

    async def wait_stopped(self) -> None:
        """Wait until shutdown has completed."""
        await self._stopped.wait()


async def _run_hook(hook: Hook) -> None:
    try:
        await hook()
    except Exception:
        # One failing hook must not keep the others (commits, closes) from running.
        logger.exception("shutdown hook %r failed", hook)


async def serve(server: GrpcServer) -> None:
    """Start the server and run until SIGTERM or SIGINT, then shut down gracefully."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await server.shutdown()
