"""The same sentiment sweep on a machine with an NVIDIA GPU: ONNX Runtime's CUDA provider in every contestant.

    pip install onnxruntime-gpu   # instead of onnxruntime, in the same environment (`duet[gpu]`)
    python benchmarks/bench_gpu.py --markdown docs/benchmarks-gpu.md

Runs `duet bench` with the ONNX Runtime predictor (which puts CUDA first where onnxruntime-gpu sees a GPU), the
naive server and the ceiling on CUDA too (DUET_ORT_PROVIDERS), and larger client counts; writes its section and
plot like the CPU run and records `nvidia-smi`'s view of the device beside them. On a machine without CUDA it says
so and exits 2: nothing in duet depends on a GPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CUDA = "CUDAExecutionProvider"


def gpu_name() -> str | None:
    """The first GPU's name and driver from nvidia-smi, or None without one."""
    if shutil.which("nvidia-smi") is None:
        return None
    completed = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                               capture_output=True, text=True, check=False)
    return completed.stdout.strip().splitlines()[0] if completed.returncode == 0 and completed.stdout.strip() else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", type=Path, default=ROOT / "docs" / "benchmarks-gpu.md")
    parser.add_argument("--users", default="1,8,32,64,256")
    parser.add_argument("--texts", default="1,8")
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    import onnxruntime

    device = gpu_name()
    if device is None or CUDA not in onnxruntime.get_available_providers():
        print(f"no CUDA here (GPU: {device or 'none'}; ONNX Runtime providers: "
              f"{onnxruntime.get_available_providers()}): install onnxruntime-gpu on a GPU machine", file=sys.stderr)
        return 2
    env = {**os.environ, "DUET_ORT_PROVIDERS": f"{CUDA},CPUExecutionProvider"}
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    if not args.markdown.exists():
        args.markdown.write_text(f"# Benchmarks on a GPU\n\nDevice: {device}.\n")
    command = [sys.executable, "-m", "duet.cli", "bench", "--predictor", "onnxruntime", "--users", args.users,
               "--texts", args.texts, "--seconds", str(args.seconds), "--no-mammography",
               "--markdown", str(args.markdown), "--plot", str(args.markdown.with_suffix(".png"))]
    return subprocess.run(command, cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
