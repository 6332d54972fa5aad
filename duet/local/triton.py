"""The real `tritonserver` binary shipped inside the PyPI package `nvidia-pytriton`, run on 127.0.0.1."""

from __future__ import annotations

import os
import platform
import sys
import sysconfig
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path


class TritonUnavailable(RuntimeError):
    """This machine cannot run the bundled Triton (not Linux x86_64/aarch64, or the wheel is missing)."""


@dataclass(frozen=True)
class TritonPorts:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002


def _pytriton_root() -> Path:
    if platform.system() != "Linux" or platform.machine() not in {"x86_64", "aarch64"}:
        raise TritonUnavailable(
            f"bundled Triton runs on Linux x86_64/aarch64, not {platform.system()} {platform.machine()}")
    spec = find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonUnavailable("the nvidia-pytriton package is not installed")
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    if not (root / "bin" / "tritonserver").exists():
        raise TritonUnavailable(f"no tritonserver binary under {root}")
    return root


def backend_directory(run_dir: Path) -> Path:
    """A backend folder holding `python/`: the Python backend plus the stub built for this interpreter."""
    root = _pytriton_root()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise TritonUnavailable(f"nvidia-pytriton has no Python backend stub for Python {version}")
    python_dir = run_dir / "backends" / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    for source in [*(root / "backends" / "python").iterdir(), stub]:
        if source.name == "__pycache__":
            continue
        link = python_dir / source.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(source)
    return run_dir / "backends"


def command(repository: Path, run_dir: Path, ports: TritonPorts, host: str = "127.0.0.1") -> list[str]:
    """The tritonserver command line for a local, CPU-only server bound to `host`."""
    return [
        str(_pytriton_root() / "bin" / "tritonserver"),
        f"--model-repository={repository}",
        f"--backend-directory={backend_directory(run_dir)}",
        f"--http-address={host}", f"--http-port={ports.http}",
        f"--grpc-address={host}", f"--grpc-port={ports.grpc}",
        f"--metrics-address={host}", f"--metrics-port={ports.metrics}",
        "--allow-gpu-metrics=false",
        "--strict-readiness=true",
        "--exit-timeout-secs=20",
        "--log-verbose=0",
    ]


def environment() -> dict[str, str]:
    """Environment for Triton: the venv's `bin` first (the stub imports the venv's packages) and the
    interpreter's libpython plus the wheel's bundled libraries on LD_LIBRARY_PATH (else the stub loads another
    libpython and dies)."""
    env = dict(os.environ)
    libs = Path(_pytriton_root()).parent.parent / "nvidia_pytriton.libs"
    library_path = [sysconfig.get_config_var("LIBDIR") or "", str(libs), env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(part for part in library_path if part)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env
