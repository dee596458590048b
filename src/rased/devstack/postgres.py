"""PostgreSQL of the local stack: Debian's server binaries, our own cluster in the state folder."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import ClassVar

import asyncpg

from rased.devstack.apt import ensure_apt_packages, package_is_installed
from rased.devstack.base import (
    ManagedServer,
    Progress,
    StackError,
    port_is_free,
    run_checked,
)

# Read by postgresql-common's maintainer scripts (include_dir of createcluster.conf): with it,
# installing a postgresql-NN package creates no `main` cluster, so no system server gets
# set up on 5432 next to ours. It exists only while our install runs.
_CREATECLUSTER_DIR = Path("/etc/postgresql-common/createcluster.d")
_NO_MAIN_CLUSTER = (
    "# Written by rased.devstack.postgres while it installs PostgreSQL.\n"
    "create_main_cluster = false\n"
)

# The longest path a unix socket can have on Linux (sun_path is 108 bytes with its NUL).
_MAX_SOCKET_PATH = 107

_CONFIG = """\
# Written by rased.devstack.postgres on every `prepare`; edit that module, not this file.
# postgresql.conf (from initdb) includes this file last, so these settings win.
listen_addresses = '{host}'
port = {port}
unix_socket_directories = '{socket_dir}'
max_connections = {max_connections}
shared_buffers = {shared_buffers}
# Results are what a bank acts on: every commit is on disk before it is acknowledged.
fsync = on
synchronous_commit = on
full_page_writes = on
timezone = 'UTC'
log_timezone = 'UTC'
# Logs go to stderr, which the stack sends to server.log.
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
"""


class PostgresServer(ManagedServer):
    """A PostgreSQL cluster of the stack's own, run with Debian's server binaries.

    Authentication is `trust` on the unix socket and on loopback only (initdb's
    `--auth-local=trust --auth-host=trust` writes host lines for 127.0.0.1/32 and ::1/128):
    the stack is for local development, and any other client address finds no pg_hba entry
    and is refused. The superuser is `postgres`; the services use `settings.postgres_user`
    on `settings.postgres_db`, which `bootstrap()` creates once the server answers.
    """

    name = "postgres"
    PACKAGES: ClassVar[list[str]] = ["postgresql"]
    SUPERUSER = "postgres"
    # The system user the server runs as when the stack runs as root (PostgreSQL refuses root).
    SYSTEM_USER = "postgres"
    MAX_CONNECTIONS = 200
    SHARED_BUFFERS = "256MB"

    @property
    def ports(self) -> dict[str, int]:
        """The client port."""
        return {"postgres_port": self.settings.postgres_port}

    @property
    def data_dir(self) -> Path:
        """The cluster's data folder (PGDATA)."""
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        """Folder of the server's unix socket."""
        return self.home / "run"

    # -- install ----------------------------------------------------------------------------

    def install(self, progress: Progress) -> None:
        """Install Debian's postgresql package without letting it create a `main` cluster."""
        if not package_is_installed("postgresql") and os.geteuid() == 0:
            ensure_apt_packages(["postgresql-common"], progress)
            marker = _CREATECLUSTER_DIR / "zz-rased-stack.conf"
            _CREATECLUSTER_DIR.mkdir(parents=True, exist_ok=True)
            marker.write_text(_NO_MAIN_CLUSTER)
            try:
                ensure_apt_packages(self.PACKAGES, progress)
            finally:
                marker.unlink(missing_ok=True)
        # Not root: apt runs through sudo and Debian's own `main` cluster may appear; start()
        # names it should it hold our port.
        ensure_apt_packages(self.PACKAGES, progress)
        progress(f"postgres: using {self.bin_dir()}")

    def bin_dir(self) -> Path:
        """Return the server binaries: those of the data folder's version, else the newest."""
        installed = {
            int(path.parent.name): path
            for path in Path("/usr/lib/postgresql").glob("*/bin")
            if path.parent.name.isdigit() and (path / "postgres").is_file()
        }
        if not installed:
            raise StackError(
                "postgres: no server under /usr/lib/postgresql/*/bin; run the stack's install step"
            )
        version_file = self.data_dir / "PG_VERSION"
        if version_file.is_file():
            wanted = int(version_file.read_text().strip())
            if wanted not in installed:
                raise StackError(
                    f"postgres: {self.data_dir} holds a PostgreSQL {wanted} cluster but only "
                    f"{sorted(installed)} is installed; install postgresql-{wanted} or upgrade "
                    "the cluster with pg_upgrade"
                )
            return installed[wanted]
        return installed[max(installed)]

    # -- prepare ----------------------------------------------------------------------------

    def run_as(self) -> str | None:
        """Run as the `postgres` system user when the stack runs as root."""
        return self.SYSTEM_USER if os.geteuid() == 0 else None

    def prepare(self, progress: Progress) -> None:
        """Create the cluster once (keeping an existing one) and write its settings."""
        self.home.mkdir(parents=True, exist_ok=True)
        owner = self._owner()
        self._check_traversable(owner)
        for folder in (self.home, self.socket_dir):
            folder.mkdir(parents=True, exist_ok=True)
            if owner is not None:
                os.chown(folder, owner.pw_uid, owner.pw_gid)
        if not (self.data_dir / "PG_VERSION").is_file():
            progress(f"postgres: initdb {self.data_dir}")
            self._run_tool(
                [
                    "initdb",
                    "--pgdata",
                    str(self.data_dir.resolve()),
                    "--username",
                    self.SUPERUSER,
                    "--encoding",
                    "UTF8",
                    "--locale",
                    "C.UTF-8",
                    "--auth-local",
                    "trust",
                    "--auth-host",
                    "trust",
                    # Page checksums report silent disk corruption instead of serving it.
                    "--data-checksums",
                ],
                "initdb",
            )
            with open(self.data_dir / "postgresql.conf", "a") as conf:
                conf.write("\n# Settings of the Rased local stack.\ninclude 'rased.conf'\n")
        rased_conf = self.data_dir / "rased.conf"
        rased_conf.write_text(
            _CONFIG.format(
                host=self.settings.host,
                port=self.settings.postgres_port,
                socket_dir=self._socket_setting(),
                max_connections=self.MAX_CONNECTIONS,
                shared_buffers=self.SHARED_BUFFERS,
            )
        )
        if owner is not None:
            os.chown(rased_conf, owner.pw_uid, owner.pw_gid)
        progress(f"postgres: config {rased_conf}")

    def _owner(self) -> pwd.struct_passwd | None:
        """Return the system user owning the cluster when we are root, else None."""
        user = self.run_as()
        if user is None:
            return None
        try:
            return pwd.getpwnam(user)
        except KeyError:
            raise StackError(
                f"postgres: system user {user!r} is missing (Debian's postgresql package creates "
                "it); run the stack's install step"
            ) from None

    def _check_traversable(self, owner: pwd.struct_passwd | None) -> None:
        """Fail clearly when the server's user cannot reach the state folder."""
        if owner is None:
            return
        for parent in self.home.resolve().parents:
            info = parent.stat()
            others_may = bool(info.st_mode & 0o001)
            group_may = bool(info.st_mode & 0o010) and info.st_gid == owner.pw_gid
            if not (others_may or group_may or info.st_uid == owner.pw_uid):
                raise StackError(
                    f"postgres: the server runs as {owner.pw_name!r}, who cannot enter {parent}; "
                    f"allow it (chmod o+x {parent}) or put the stack elsewhere with "
                    "RASED_STACK_STATE_DIR"
                )

    def _socket_setting(self) -> str:
        """Return unix_socket_directories: ours, or none when the path would be too long."""
        socket = self.socket_dir.resolve() / f".s.PGSQL.{self.settings.postgres_port}"
        # A too-long socket path stops the server from starting; TCP on loopback is enough.
        return str(self.socket_dir.resolve()) if len(str(socket)) <= _MAX_SOCKET_PATH else ""

    def _run_tool(self, args: list[str], what: str) -> None:
        """Run a PostgreSQL tool as the server's user, in the server's folder."""
        cmd = [str(self.bin_dir() / args[0]), *args[1:]]
        user = self.run_as()
        if user is not None:
            cmd = ["runuser", "-u", user, "--", *cmd]
        run_checked(cmd, f"postgres: {what}", cwd=self.home)

    # -- run --------------------------------------------------------------------------------

    def command(self) -> list[str]:
        """Run the postmaster in the foreground on our data folder."""
        return [str(self.bin_dir() / "postgres"), "-D", str(self.data_dir.resolve())]

    def start(self, progress: Progress) -> None:
        """Start the cluster; name a Debian cluster that holds our port, if one does."""
        port = self.settings.postgres_port
        if self.pid() is None and not port_is_free(self.settings.host, port):
            cluster = _debian_cluster_on(port)
            if cluster is not None:
                raise StackError(
                    f"postgres: port {port} is held by Debian's cluster {cluster}; stop it with "
                    f"`pg_ctlcluster {cluster.replace('/', ' ')} stop` (and set it to manual in "
                    f"/etc/postgresql/{cluster}/start.conf), or choose another port with "
                    "RASED_STACK_POSTGRES_PORT=<port>"
                )
        super().start(progress)

    def stop(self, progress: Progress) -> None:
        """Stop with a fast shutdown; fall back to the shared SIGTERM/SIGKILL handling."""
        postmaster = self._postmaster_pid()
        if self.pid() is not None and postmaster is not None:
            # SIGTERM to the postmaster is a "smart" shutdown that waits for every client to
            # disconnect; SIGINT rolls back open transactions, checkpoints and exits.
            with contextlib.suppress(ProcessLookupError):
                os.kill(postmaster, signal.SIGINT)
            deadline = time.monotonic() + self.settings.stop_timeout.total_seconds()
            while time.monotonic() < deadline and self.pid() is not None:
                time.sleep(0.1)
            if self.pid() is None:
                self.pid_file.unlink(missing_ok=True)
                progress(f"{self.name}: stopped (fast shutdown of pid {postmaster})")
                return
        # Still running (or never ours): SIGTERM to the group, then SIGKILL.
        super().stop(progress)

    def _postmaster_pid(self) -> int | None:
        """Return the postmaster's pid (not the runuser wrapper's), if it is ours."""
        ours = self.pid()
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (OSError, ValueError, IndexError):
            return None
        # A stale postmaster.pid may name a pid reused since: only signal our own process
        # or the child of our runuser wrapper.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        return pid if ours is not None and ours in (pid, parent) else None

    # -- talk to it -------------------------------------------------------------------------

    def admin_dsn(self, database: str = "postgres") -> str:
        """Return a DSN for the superuser (loopback, trust)."""
        return f"postgresql://{self.SUPERUSER}@{self._netloc()}/{database}"

    def dsn(self, database: str | None = None) -> str:
        """Return the application's DSN: its role on its database (or on `database`)."""
        db = database or self.settings.postgres_db
        return f"postgresql://{self.settings.postgres_user}@{self._netloc()}/{db}"

    def _netloc(self) -> str:
        """Return host:port, with an IPv6 address in brackets."""
        host = self.settings.host
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{self.settings.postgres_port}"

    async def probe(self) -> str:
        """Connect as the superuser, run SELECT 1 and report the server version."""
        conn = await asyncpg.connect(self.admin_dsn(), timeout=5)
        try:
            await conn.fetchval("SELECT 1")
            version = await conn.fetchval("SHOW server_version")
        finally:
            await conn.close()
        return f"PostgreSQL {version}"

    async def bootstrap(self) -> None:
        """Create the application's role and database if missing; safe to call any time."""
        user, db = self.settings.postgres_user, self.settings.postgres_db
        conn = await asyncpg.connect(self.admin_dsn(), timeout=10)
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", user):
                role = await conn.fetchval("SELECT quote_ident($1)", user)
                # A concurrent bootstrap may have created it since the check.
                with contextlib.suppress(asyncpg.DuplicateObjectError):
                    await conn.execute(f"CREATE ROLE {role} LOGIN")
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", db):
                role = await conn.fetchval("SELECT quote_ident($1)", user)
                name = await conn.fetchval("SELECT quote_ident($1)", db)
                # The role owns its database, so its migrations may create objects there.
                with contextlib.suppress(
                    asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError
                ):
                    await conn.execute(f"CREATE DATABASE {name} OWNER {role} ENCODING 'UTF8'")
        finally:
            await conn.close()


def _debian_cluster_on(port: int) -> str | None:
    """Return "version/name" of an online Debian-managed cluster on this port, if any."""
    if shutil.which("pg_lsclusters") is None:
        return None
    result = subprocess.run(
        ["pg_lsclusters", "--no-header"],
        capture_output=True,
        text=True,
        check=False,
    )
    for line in result.stdout.splitlines():
        fields = re.split(r"\s+", line.strip())
        if len(fields) >= 4 and fields[2] == str(port) and fields[3].startswith("online"):
            return f"{fields[0]}/{fields[1]}"
    return None


SERVER = PostgresServer
