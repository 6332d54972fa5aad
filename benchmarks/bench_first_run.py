"""What a newcomer's first `make up` waits for, after the install: `duet up --build` on a copy of the committed
model repository (nothing built) with an empty build cache, on free ports.

    python benchmarks/bench_first_run.py [--quick]

A client polls sentiment's infer and mammography's readiness every 0.25 s from the moment `duet up --build`
starts and reports when each first answers, and every stretch in which sentiment, once up, stopped answering (the
stack's restart when mammography joins). The install itself is `time make .venv/.installed` on a fresh machine.
Prints a Markdown table. `--quick` builds the seconds-long test models (a smoke run of this script, not a figure).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
from rich.console import Console

from duet.local.stack import free_ports
from duet.paths import ROOT
from duet.progress import progress_bar

SENTIMENT_BODY = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["Markets rally"]}]}


def committed_repository(target: Path) -> Path:
    """The model repository as a fresh clone has it: configs, no built model."""
    listed = subprocess.run(["git", "ls-files", "models/model_repository"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.split()
    for name in listed:
        destination = target / Path(name).relative_to("models/model_repository")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, destination)
    return target


def answers(client: httpx.Client, method: str, url: str, **kwargs: object) -> bool:
    try:
        return client.request(method, url, timeout=5, **kwargs).status_code == 200
    except httpx.HTTPError:
        return False


def measure(work: Path, quick: bool, limit_s: float) -> dict:
    http, grpc, t_http, t_grpc, t_metrics = free_ports(5)
    log = work / "duet-up.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "duet.cli", "up", "--build", *(["--quick-build"] if quick else []),
             "--no-gateway", f"--http-port={http}", f"--grpc-port={grpc}", f"--triton-http-port={t_http}",
             f"--triton-grpc-port={t_grpc}", f"--triton-metrics-port={t_metrics}", f"--run-dir={work / 'run'}",
             f"--model-repository={committed_repository(work / 'repository')}"],
            stdout=output, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "DUET_CACHE_DIR": str(work / "cache")},
        )
    started = time.monotonic()
    url = f"http://127.0.0.1:{http}"
    first: dict[str, float] = {}
    pauses: list[tuple[float, float]] = []
    down_since: float | None = None
    try:
        with httpx.Client() as client, progress_bar(Console()) as progress:
            task = progress.add_task("first run: building, nothing answers yet", total=None)
            while "mammography" not in first and time.monotonic() - started < limit_s:
                if process.poll() is not None:
                    raise SystemExit(f"duet up exited with {process.returncode}; see {log}")
                now = time.monotonic() - started
                sentiment = answers(client, "POST", f"{url}/v2/models/sentiment/infer", json=SENTIMENT_BODY)
                if sentiment:
                    first.setdefault("sentiment", now)
                    if down_since is not None:
                        pauses.append((down_since, now))
                        down_since = None
                elif "sentiment" in first and down_since is None:
                    down_since = now
                if answers(client, "GET", f"{url}/v2/models/mammography/ready"):
                    first["mammography"] = now
                if first:
                    progress.update(task, description=f"first run: {', '.join(first)} answering")
                time.sleep(0.25)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    return {"first": first, "pauses": pauses}


def markdown(result: dict, quick: bool) -> str:
    first, pauses = result["first"], result["pauses"]
    rows = [f"| sentiment answers | {first.get('sentiment', float('nan')) / 60:.1f} min |",
            f"| mammography answers | {first.get('mammography', float('nan')) / 60:.1f} min |"]
    rows += [f"| sentiment paused (from {start:.0f} s) | {end - start:.1f} s |" for start, end in pauses]
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    heading = (f"First `duet up --build` after the install{' (QUICK models: a smoke run)' if quick else ''}: "
               f"{platform.machine()}, {os.cpu_count()} cores, {when}; times from its start.")
    return "\n".join([heading, "", "| | |", "|---|---|", *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Quick test models (a smoke run, not a figure).")
    parser.add_argument("--limit-s", type=float, default=1800.0, help="Give up after this long.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="duet-first-run-") as folder:
        print(markdown(measure(Path(folder), args.quick, args.limit_s), args.quick))


if __name__ == "__main__":
    main()
