"""Redis of the local stack: Debian's redis-server with an append-only file in the state folder."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar

import redis.asyncio as aioredis

from rased.devstack.apt import ensure_apt_packages
from rased.devstack.base import ManagedServer, Progress, StackError, run_checked

_CONFIG = """\
# Written by rased.devstack.redis on every `prepare`; edit that module, not this file.
bind {host}
port {port}
# Protected mode refuses clients from other hosts when no password is set; with a loopback
# bind it changes nothing, and it stays on as a guard should the bind be widened.
protected-mode yes
daemonize no
supervised no
# Logs go to stdout, which the stack sends to server.log.
logfile ""
dir {dir}

# Buffered transactions are accepted data ("nothing accepted may be lost"), so the append-only
# file is on. everysec fsyncs once a second: a crash of Redis itself loses nothing (each write
# reaches the kernel before the client gets its reply); only a power loss or kernel crash can
# lose up to about a second. `appendfsync always` closes that window at the cost of one fsync
# per write; use it where the disk can take it.
appendonly yes
appendfilename "appendonly.aof"
appenddirname "appendonlydir"
appendfsync everysec
# Rewrites start the new file with an RDB snapshot: compact, and fast to load on restart.
aof-use-rdb-preamble yes
# A truncated last command (power loss mid-write) is dropped at load instead of refusing to start.
aof-load-truncated yes
# No separate RDB snapshots: the AOF already holds everything, and each snapshot forks the
# process (doubling memory for a moment) on a machine the whole stack shares.
save ""

# Never evict: evicting a buffer key would silently drop accepted events. A full Redis makes
# writes fail loudly instead.
maxmemory {maxmemory}
maxmemory-policy noeviction
# The ingestion sweeper keeps its own deadlines in sorted sets; nothing may rely on key-space
# (expiry) notifications, which are fire-and-forget, so they stay off.
notify-keyspace-events ""
"""


class RedisServer(ManagedServer):
    """Debian's redis-server, run in the foreground with its data in the state folder."""

    name = "redis"
    # Memory cap for the local stack; writes fail (noeviction) rather than grow past it.
    MAXMEMORY = "1gb"
    PACKAGES: ClassVar[list[str]] = ["redis-server"]

    @property
    def ports(self) -> dict[str, int]:
        """The client port."""
        return {"redis_port": self.settings.redis_port}

    @property
    def config_file(self) -> Path:
        """The redis.conf the server reads."""
        return self.home / "redis.conf"

    def binary(self) -> str:
        """Return the path of redis-server."""
        path = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(path).is_file():
            raise StackError("redis: redis-server is not installed; run the stack's install step")
        return path

    def install(self, progress: Progress) -> None:
        """Install Debian's redis-server package unless it is there."""
        installed = ensure_apt_packages(self.PACKAGES, progress)
        if installed and Path("/run/systemd/system").is_dir():
            # The package enables its own service for the next boot, on the port we use.
            progress("redis: disabling Debian's redis-server service (the stack runs its own)")
            run_checked(
                ["systemctl", "disable", "--now", "redis-server.service"],
                "disabling Debian's redis-server service",
            )
        progress(f"redis: using {self.binary()}")

    def prepare(self, progress: Progress) -> None:
        """Write redis.conf; the AOF in the state folder is kept as it is."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(
            _CONFIG.format(
                host=self.settings.host,
                port=self.settings.redis_port,
                dir=_quote(str(self.home.resolve())),
                maxmemory=self.MAXMEMORY,
            )
        )
        progress(f"redis: config {self.config_file}")

    def command(self) -> list[str]:
        """Run redis-server on our config, in the foreground."""
        return [self.binary(), str(self.config_file.resolve())]

    async def probe(self) -> str:
        """PING, then report the version and whether the AOF is on."""
        client = aioredis.Redis(
            host=self.settings.host, port=self.settings.redis_port, socket_timeout=5
        )
        try:
            await client.ping()
            info = await client.info("server")
            persistence = await client.info("persistence")
        finally:
            await client.aclose()
        aof = "on" if str(persistence.get("aof_enabled")) == "1" else "off"
        return f"Redis {info['redis_version']}, AOF {aof}"


def _quote(value: str) -> str:
    """Quote a value for redis.conf (paths may hold spaces)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


SERVER = RedisServer
