"""The Rased services `make up` starts after the servers, each a console script of the package."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rased.devstack.base import ManagedServer, Progress, StackError
from rased.devstack.dev_secrets import load_dev_secrets
from rased.devstack.settings import StackSettings


@dataclass(frozen=True)
class ServiceEntry:
    """A service the stack runs: its name, console script and gRPC port."""

    name: str
    script: str
    grpc_port: int


# One entry per service that exists (persistence, scoring, notification, results and admin
# join as they land); each is a console script declared in pyproject.toml.
SERVICE_ENTRIES: tuple[ServiceEntry, ...] = (ServiceEntry("ingestion", "rased-ingestion", 50051),)


class RasedService(ManagedServer):
    """A Rased service process, healthy when grpc.health.v1 says SERVING."""

    def __init__(self, settings: StackSettings, entry: ServiceEntry) -> None:
        super().__init__(settings)
        self.entry = entry
        self.name = entry.name  # type: ignore[misc]

    @property
    def ports(self) -> dict[str, int]:
        """The service's gRPC port."""
        return {f"{self.entry.name}_port": self.entry.grpc_port}

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
            "GRPC_PORT": str(self.entry.grpc_port),
            "REDIS_URL": f"redis://{host}:{self.settings.redis_port}/0",
            "POSTGRES_DSN": (
                f"postgresql://{self.settings.postgres_user}@{host}:"
                f"{self.settings.postgres_port}/{self.settings.postgres_db}"
            ),
            "KAFKA_BOOTSTRAP_SERVERS": f"{host}:{self.settings.kafka_port}",
            "SESSION_TOKEN_SECRET": dev.session_token_secret,
            "MASTER_KEYS": dev.master_keys,
        }
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


def load_services(settings: StackSettings) -> list[RasedService]:
    """Return the services the stack runs."""
    return [RasedService(settings, entry) for entry in SERVICE_ENTRIES]
