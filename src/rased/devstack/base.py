"""The contract every locally managed server follows, and the process handling they share."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from rased.devstack.settings import StackSettings, repository_root

Progress = Callable[[str], None]


class StackError(RuntimeError):
    """A server of the local stack could not be installed, started, reached or stopped."""


def port_is_free(host: str, port: int) -> bool:
    """Tell whether nothing listens on host:port (a bind attempt succeeds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def pid_is_alive(pid: int) -> bool:
    """Tell whether a process with this pid exists (and is not a zombie we own)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # Reap it if it is our exited child, so a zombie does not look alive.
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        return state != "Z"
    return True


class ManagedServer(abc.ABC):
    """One server of the local stack: installed, configured, started and probed by the project.

    Subclasses say how to install, configure and run their server in the foreground and how
    to check that it answers its own protocol; this class spawns it detached, records its pid,
    waits for readiness, and stops it by pid.
    """

    name: ClassVar[str]

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.repo = repository_root()

    # -- what a subclass provides -------------------------------------------------------

    @property
    @abc.abstractmethod
    def ports(self) -> dict[str, int]:
        """Ports this server listens on, keyed by their StackSettings field (clients' first)."""

    @abc.abstractmethod
    def install(self, progress: Progress) -> None:
        """Make the server's binaries available; idempotent and fast when already done."""

    @abc.abstractmethod
    def prepare(self, progress: Progress) -> None:
        """Write config and initialise the data folder; idempotent, keeps existing data."""

    @abc.abstractmethod
    def command(self) -> list[str]:
        """Return the command that runs the server in the foreground."""

    @abc.abstractmethod
    async def probe(self) -> str:
        """Talk the server's own protocol once; return a short description or raise."""

    def environment(self) -> dict[str, str]:
        """Return extra environment variables for the server process."""
        return {}

    def run_as(self) -> str | None:
        """Return the system user the server must run as, or None for the current one."""
        return None

    # -- shared handling ------------------------------------------------------------------

    @property
    def home(self) -> Path:
        """Folder of this server inside the stack's state folder."""
        return self.settings.state_dir / self.name

    @property
    def pid_file(self) -> Path:
        """File holding the pid of the running server."""
        return self.home / "server.pid"

    @property
    def log_file(self) -> Path:
        """File receiving the server's stdout and stderr."""
        return self.home / "server.log"

    def pid(self) -> int | None:
        """Return the pid of the server we started, if it still runs."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_is_alive(pid) else None

    def endpoint(self) -> str:
        """Return host:port of the client-facing port."""
        return f"{self.settings.host}:{next(iter(self.ports.values()))}"

    def start(self, progress: Progress) -> None:
        """Start the server detached, unless ours already runs; fail clearly on a taken port."""
        if self.pid() is not None:
            progress(f"{self.name}: already running (pid {self.pid()})")
            return
        for field, port in self.ports.items():
            if not port_is_free(self.settings.host, port):
                raise StackError(
                    f"{self.name}: port {port} on {self.settings.host} is already in use by "
                    f"another process; stop that process or choose another port with "
                    f"RASED_STACK_{field.upper()}=<port>"
                )
        self.home.mkdir(parents=True, exist_ok=True)
        cmd = self.command()
        user = self.run_as()
        if user is not None and os.geteuid() == 0:
            cmd = ["runuser", "-u", user, "--", *cmd]
        env = {**os.environ, **self.environment()}
        with open(self.log_file, "ab") as log:
            log.write(f"\n--- starting {' '.join(cmd)} at {time.ctime()}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.home,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        progress(f"{self.name}: started (pid {proc.pid}), log {self.log_file}")

    async def wait_ready(self, progress: Progress) -> str:
        """Probe until the server answers, its process dies, or the start timeout passes."""
        deadline = time.monotonic() + self.settings.start_timeout.total_seconds()
        last_error = "no answer yet"
        next_note = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                return await asyncio.wait_for(self.probe(), timeout=10)
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                last_error = f"{type(exc).__name__}: {exc}".strip()
            if self.pid_file.exists() and self.pid() is None:
                raise StackError(
                    f"{self.name}: the server exited during start-up ({last_error}); "
                    f"see {self.log_file}:\n{self.log_tail()}"
                )
            if time.monotonic() >= next_note:
                progress(f"{self.name}: waiting for it to answer ({last_error[:120]})")
                next_note = time.monotonic() + 10
            await asyncio.sleep(0.5)
        raise StackError(
            f"{self.name}: no answer within {self.settings.start_timeout} ({last_error}); "
            f"see {self.log_file}:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        """Return the last lines of the server's log."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, progress: Progress) -> None:
        """Stop the server by pid: SIGTERM, then SIGKILL after the stop timeout."""
        pid = self.pid()
        if pid is None:
            progress(f"{self.name}: not running")
            self.pid_file.unlink(missing_ok=True)
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.stop_timeout.total_seconds()
        while time.monotonic() < deadline and pid_is_alive(pid):
            time.sleep(0.2)
        if pid_is_alive(pid):
            progress(f"{self.name}: did not exit after SIGTERM, killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while pid_is_alive(pid):
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        progress(f"{self.name}: stopped (pid {pid})")


def run_checked(cmd: list[str], what: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a set-up command to completion; raise StackError with its output when it fails."""
    result = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-3000:]
        raise StackError(f"{what} failed (exit {result.returncode}): {' '.join(cmd)}\n{output}")
    return result  # type: ignore[no-any-return]
