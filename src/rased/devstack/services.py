"""The Rased services `make up` starts after the servers, each a console script of the package."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rased.devstack.base import ManagedServer, Progress, StackError
from rased.devstack.settings import StackSettings


@dataclass(frozen=True)
class ServiceEntry:
    """A service the stack runs: its name, console script and gRPC port."""

    name: str
    script: str
    grpc_port: int


# Filled in as the services land (ingestion, persistence, scoring, notification, results,
# admin); each entry is a console script declared in pyproject.toml.
SERVICE_ENTRIES: tuple[ServiceEntry, ...] = ()


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
        """Point the service at its port."""
        prefix = f"RASED_{self.entry.name.upper()}_"
        return {
            f"{prefix}GRPC_HOST": self.settings.host,
            f"{prefix}GRPC_PORT": str(self.entry.grpc_port),
        }

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
