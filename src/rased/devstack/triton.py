"""Triton Inference Server (CPU, python backend) from the `nvidia-pytriton` wheel."""

from __future__ import annotations

import ctypes.util
import filecmp
import importlib.util
import os
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import ClassVar

from tritonclient.grpc.aio import InferenceServerClient

from rased.devstack.apt import ensure_apt_packages
from rased.devstack.base import ManagedServer, Progress, StackError

STUB_NAME = "triton_python_backend_stub"


def distribution_dir() -> Path:
    """Return the wheel's `tritonserver` folder (bin/, backends/, python_backend_stubs/)."""
    # find_spec locates the package without importing it (pytriton's import pulls in a lot).
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise StackError(
            "triton: the Triton server binary comes from the `stack` extra (nvidia-pytriton), "
            "which is not installed; run: pip install -e '.[stack]'"
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    if not (root / "bin" / "tritonserver").is_file():
        raise StackError(f"triton: {root}/bin/tritonserver is missing; reinstall nvidia-pytriton")
    return root


def python_version() -> str:
    """Return the running interpreter's `major.minor`, which picks the backend stub."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def libpython_dir() -> Path | None:
    """Return the folder of the running interpreter's own libpython, if it has one."""
    # The stub embeds Python; it must load the same runtime as this interpreter, because it
    # reads this interpreter's standard library (a pyenv 3.11.7 stdlib run by Debian's
    # 3.11.2 libpython is a mismatch waiting to happen).
    name = sysconfig.get_config_var("INSTSONAME")
    libdir = sysconfig.get_config_var("LIBDIR")
    if name and libdir and (Path(libdir) / name).is_file():
        return Path(libdir)
    return None


def _prepend(folder: Path, variable: str) -> str:
    """Return the search-path variable of this process with folder put first."""
    current = os.environ.get(variable)
    return f"{folder}{os.pathsep}{current}" if current else str(folder)


class TritonServer(ManagedServer):
    """Triton with the python backend, serving the project's `model_repository/` on CPU."""

    name = "triton"

    # Triton waits this long for in-flight requests and model unloading after SIGTERM; kept
    # below the stop timeout so it exits on its own and removes its shared-memory regions
    # (a SIGKILL leaves them in /dev/shm).
    EXIT_TIMEOUT_FRACTION: ClassVar[float] = 0.5

    @property
    def ports(self) -> dict[str, int]:
        """gRPC first: the scoring worker talks gRPC."""
        s = self.settings
        return {
            "triton_grpc_port": s.triton_grpc_port,
            "triton_http_port": s.triton_http_port,
            "triton_metrics_port": s.triton_metrics_port,
        }

    @property
    def model_repository(self) -> Path:
        """The project's model repository, served as it is (Triton only reads it)."""
        return self.repo / "model_repository"

    def install(self, progress: Progress) -> None:
        """Put this Python's backend stub where the python backend looks for it."""
        root = distribution_dir()
        version = python_version()
        source = root / "python_backend_stubs" / version / STUB_NAME
        if not source.is_file():
            shipped = sorted(p.name for p in (root / "python_backend_stubs").iterdir())
            raise StackError(
                f"triton: nvidia-pytriton has no python backend stub for Python {version} "
                f"(it ships {', '.join(shipped)}); use one of those for the virtualenv"
            )
        # The backend looks for the stub next to libtriton_python.so; the wheel keeps one
        # stub per Python version elsewhere. Compare contents so a virtualenv rebuilt with
        # another Python gets the matching stub.
        target = root / "backends" / "python" / STUB_NAME
        if not target.is_file() or not filecmp.cmp(source, target, shallow=False):
            progress(f"triton: installing the Python {version} backend stub")
            partial = target.with_name(f".{STUB_NAME}.partial")
            try:
                shutil.copy2(source, partial)
                os.replace(partial, target)
            except OSError as exc:
                raise StackError(f"triton: cannot write {target}: {exc}") from exc
        self._ensure_libpython(progress, version)
        progress(f"triton: Triton from {root}")

    def _ensure_libpython(self, progress: Progress, version: str) -> None:
        """Make sure the stub finds a libpython of this interpreter's version."""
        if libpython_dir() is not None or ctypes.util.find_library(f"python{version}"):
            return
        # Only an interpreter without a shared runtime of its own gets here (a static
        # build); Debian packages the shared runtime of its Python separately.
        progress(f"triton: the python backend stub needs libpython{version}.so; installing it")
        ensure_apt_packages([f"libpython{version}"], progress)

    def prepare(self, progress: Progress) -> None:
        """Check the model repository is there; Triton keeps no state of its own."""
        if not self.model_repository.is_dir():
            raise StackError(f"triton: the model repository {self.model_repository} is missing")
        self.home.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        """Run tritonserver on the project's models, bound to the stack's host and ports."""
        root = distribution_dir()
        s = self.settings
        exit_timeout = max(1, int(s.stop_timeout.total_seconds() * self.EXIT_TIMEOUT_FRACTION))
        return [
            str(root / "bin" / "tritonserver"),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={root / 'backends'}",
            f"--cache-directory={root / 'caches'}",
            "--model-control-mode=none",
            f"--http-address={s.host}",
            f"--http-port={s.triton_http_port}",
            f"--grpc-address={s.host}",
            f"--grpc-port={s.triton_grpc_port}",
            f"--metrics-address={s.host}",
            f"--metrics-port={s.triton_metrics_port}",
            # CPU only: no DCGM GPU metrics (they log NVML/DCGM failures) and no pinned
            # host memory pool (it needs a CUDA driver and warns at every start).
            "--allow-gpu-metrics=false",
            "--pinned-memory-pool-byte-size=0",
            f"--exit-timeout-secs={exit_timeout}",
            # Shared-memory names are global to the machine: key them by port so two stacks
            # (two checkouts, or CI next to a developer's stack) never share a region.
            f"--backend-config=python,shm-region-prefix-name=rased_triton_{s.triton_grpc_port}_",
            "--log-verbose=0",
        ]

    def environment(self) -> dict[str, str]:
        """Make the backend stub embed this interpreter and see this virtualenv's packages."""
        # The stub's embedded Python finds its prefix through `python3` on PATH; with this
        # interpreter's folder first it resolves to the virtualenv (numpy, onnxruntime and
        # the project itself importable from model.py). Triton's own libraries need nothing:
        # the wheel's binaries find nvidia_pytriton.libs through their RPATH.
        env = {"PATH": _prepend(Path(sys.executable).parent, "PATH")}
        libdir = libpython_dir()
        if libdir is not None:
            env["LD_LIBRARY_PATH"] = _prepend(libdir, "LD_LIBRARY_PATH")
        return env

    async def probe(self) -> str:
        """Ask Triton over gRPC whether it is ready, its version and its ready models."""
        client = InferenceServerClient(url=f"{self.settings.host}:{self.settings.triton_grpc_port}")
        try:
            if not await client.is_server_ready(client_timeout=5):
                raise StackError("triton: the server answers but is not ready")
            metadata = await client.get_server_metadata(client_timeout=5)
            index = await client.get_model_repository_index(client_timeout=5)
        finally:
            await client.close()
        ready = sum(1 for model in index.models if model.state == "READY")
        return f"Triton {metadata.version}, {ready} models ready"


SERVER = TritonServer
