"""The Rased services `make up` starts after the servers, each a console script of the package."""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rased.devstack.base import ManagedServer, Progress, StackError
from rased.devstack.dev_secrets import load_dev_secrets
from rased.devstack.settings import StackSettings


@dataclass(frozen=True)
class ServiceEntry:
    """A service the stack runs: its name, console script, port and the gRPC services it serves.

    `grpc_port` is the default port, the one docker-compose and Envoy use; the local stack
    runs the service on its setting `RASED_STACK_<NAME>_PORT` (`service_port`). The
    gateway's port is its HTTP port; it forwards each service named in another entry's
    `grpc_services` to that entry's port.
    """

    name: str
    script: str
    grpc_port: int
    grpc_services: tuple[str, ...] = ()


# One entry per service that exists (persistence, scoring, notification, results and admin
# join as they land); each is a console script declared in pyproject.toml.
SERVICE_ENTRIES: tuple[ServiceEntry, ...] = (
    ServiceEntry(
        "ingestion",
        "rased-ingestion",
        50051,
        ("rased.v1.IngestService", "rased.v1.SessionService"),
    ),
    ServiceEntry("persistence", "rased-persistence", 50052),
    ServiceEntry("admin", "rased-admin", 50053, ("rased.v1.AdminService",)),
    ServiceEntry("results", "rased-results", 50054, ("rased.v1.ResultsService",)),
    ServiceEntry("scoring", "rased-scoring", 50056),
    ServiceEntry("notification", "rased-notification", 50055),
    # Last: the REST edge in front of the others (HTTP on this port).
    ServiceEntry("gateway", "rased-gateway", 8080),
)


def service_port(settings: StackSettings, entry: ServiceEntry) -> int:
    """Return the port the stack runs a service on (its setting, by default its entry's)."""
    port: int = getattr(settings, f"{entry.name}_port")
    return port


class RasedService(ManagedServer):
    """A Rased service process, healthy when grpc.health.v1 says SERVING."""

    protocol = "gRPC"

    def __init__(self, settings: StackSettings, entry: ServiceEntry) -> None:
        super().__init__(settings)
        self.entry = entry
        self.name = entry.name  # type: ignore[misc]

    @property
    def ports(self) -> dict[str, int]:
        """The service's port, from the stack's settings (`RASED_STACK_<NAME>_PORT`)."""
        return {f"{self.entry.name}_port": service_port(self.settings, self.entry)}

    def install(self, progress: Progress) -> None:
        """Nothing to install: the script comes with the package."""
        if self._script() is None:
            raise StackError(f"{self.name}: console script {self.entry.script} is not installed")

    def prepare(self, progress: Progress) -> None:
        """Nothing to prepare: services keep no local state."""

    def _script(self) -> str | None:
        local = Path(sys.executable).parent / self.entry.script
        return str(local) if local.exists() else shutil.which(self.entry.script)

    def command(self) -> list[str]:
        """Run the console script."""
        return [self._script() or self.entry.script]

    def environment(self) -> dict[str, str]:
        """Point the service at its port, the stack's servers and the stack's secrets."""
        prefix = f"RASED_{self.entry.name.upper()}_"
        host = self.settings.host
        dev = load_dev_secrets(self.settings)
        values = {
            "GRPC_HOST": host,
            "GRPC_PORT": str(service_port(self.settings, self.entry)),
            "REDIS_URL": f"redis://{host}:{self.settings.redis_port}/0",
            "POSTGRES_DSN": (
                f"postgresql://{self.settings.postgres_user}@{host}:"
                f"{self.settings.postgres_port}/{self.settings.postgres_db}"
            ),
            "KAFKA_BOOTSTRAP_SERVERS": f"{host}:{self.settings.kafka_port}",
            # A JSON list: pydantic-settings reads list fields from the environment as JSON.
            "CASSANDRA_CONTACT_POINTS": json.dumps([host]),
            "CASSANDRA_PORT": str(self.settings.cassandra_port),
            "CASSANDRA_KEYSPACE": self.settings.cassandra_keyspace,
            "SESSION_TOKEN_SECRET": dev.session_token_secret,
            "MASTER_KEYS": dev.master_keys,
            "TRITON_URL": f"{host}:{self.settings.triton_grpc_port}",
        }
        if self.entry.name == "admin":
            # The operator credential goes to the admin service alone, not to every service.
            values["OPERATOR_TOKEN"] = dev.operator_token
        return {prefix + name: value for name, value in values.items()}

    async def probe(self) -> str:
        """Ask grpc.health.v1 for the server's overall health."""
        async with aio.insecure_channel(self.endpoint()) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=2
            )
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            raise StackError(f"{self.name}: health is {reply.status}")
        return "SERVING"


class GatewayService(RasedService):
    """The local REST edge, healthy when its aggregated /health says SERVING."""

    protocol = "HTTP"

    def environment(self) -> dict[str, str]:
        """Point the edge at every other entry's gRPC services."""
        host = self.settings.host
        upstreams = {
            service: f"{host}:{service_port(self.settings, entry)}"
            for entry in SERVICE_ENTRIES
            for service in entry.grpc_services
        }
        return {
            "RASED_GATEWAY_HTTP_HOST": host,
            "RASED_GATEWAY_HTTP_PORT": str(service_port(self.settings, self.entry)),
            "RASED_GATEWAY_UPSTREAMS": json.dumps(upstreams),
            # Any origin locally: publishable keys still check their own allowed origins.
            "RASED_GATEWAY_CORS_ALLOWED_ORIGINS": json.dumps(["*"]),
        }

    async def probe(self) -> str:
        """Ask the edge's /health, which checks every upstream's grpc.health.v1."""
        timeout = aiohttp.ClientTimeout(total=3)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(f"http://{self.endpoint()}/health") as response,
        ):
            body = await response.json()
        if response.status != 200:
            raise StackError(f"{self.name}: {body}")
        return f"SERVING ({len(body['services'])} upstream services)"


def load_services(settings: StackSettings) -> list[RasedService]:
    """Return the services the stack runs."""
    return [
        (GatewayService if entry.script == "rased-gateway" else RasedService)(settings, entry)
        for entry in SERVICE_ENTRIES
    ]
