"""Soak test: the local stack under a steady locust load for a long time, its memory sampled throughout.

    python -m duet.local.soak --seconds 600 --users 16            # what `make soak` runs (10 minutes)

Starts a stack as `duet up` does, runs locust headless with the soak shape (`DUET_SHAPE=soak`, see
`loadtests/shapes.py`), and samples the resident memory (RSS, bytes) of each child's whole process group every
`--interval` seconds. The verdict: no failed request, and no child's RSS at the end of the run more than
`--max-growth` above its level right after the warm-up (the first `--warmup` seconds are excluded: caches, arenas
and the batcher settle there). Writes the samples and the verdict as JSON; exits 1 when either limit is broken.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ..paths import ROOT, RUN_DIR
from .stack import LocalStack, StackConfig, free_ports, process_group_members
from .triton import TritonPorts

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def group_rss_bytes(pgid: int) -> int:
    """Resident memory of every process in the group `pgid`, summed (bytes; shared pages counted per process)."""
    total = 0
    for pid in process_group_members(pgid):
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_BYTES
        except (OSError, IndexError, ValueError):
            continue
    return total


def growth(samples: list[tuple[float, int]], warmup_s: float, window_s: float) -> float:
    """Relative RSS growth: the median of the last `window_s` seconds over the median of the first `window_s`
    seconds after `warmup_s`. Samples are (seconds since start, bytes)."""
    after = [(t, rss) for t, rss in samples if t >= warmup_s]
    if len(after) < 2:
        raise ValueError("not enough samples after the warm-up; run longer or sample more often")
    start, end = after[0][0], after[-1][0]
    first = [rss for t, rss in after if t <= start + window_s]
    last = [rss for t, rss in after if t >= end - window_s]
    return statistics.median(last) / statistics.median(first) - 1.0


def _locust_totals(stats_csv: Path) -> dict[str, int]:
    with stats_csv.open() as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    aggregated = rows["Aggregated"]
    return {"requests": int(aggregated["Request Count"]), "failures": int(aggregated["Failure Count"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600, help="Length of the load (default 10 minutes).")
    parser.add_argument("--users", type=int, default=16, help="Concurrent locust users.")
    parser.add_argument("--user-class", default="SentimentUser", help="SentimentUser or MammographyUser.")
    parser.add_argument("--predictor", default="auto", choices=["auto", "triton", "onnxruntime"])
    parser.add_argument("--interval", type=float, default=5.0, help="Seconds between memory samples.")
    parser.add_argument("--warmup", type=float, default=60.0, help="Seconds excluded from the memory verdict.")
    parser.add_argument("--max-growth", type=float, default=0.10, help="Largest RSS growth allowed (0.10 = 10%%).")
    parser.add_argument("--run-dir", type=Path, default=RUN_DIR / "soak")
    args = parser.parse_args()

    console = Console()
    models = ("mammography",) if args.user_class == "MammographyUser" else ("sentiment",)
    http, grpc, t_http, t_grpc, t_metrics = free_ports(5)
    config = StackConfig(run_dir=args.run_dir.resolve(), http_port=http, grpc_port=grpc,
                         triton=TritonPorts(t_http, t_grpc, t_metrics), predictor=args.predictor, models=models)
    stack = LocalStack(config, say=console.print)
    with console.status("starting the stack..."):
        stack.start()
    samples: dict[str, list[tuple[float, int]]] = {"predictor": [], "transformer": []}
    prefix = config.run_dir / "locust"
    try:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "DUET_SHAPE": "soak",
               "DUET_SHAPE_SECONDS": str(args.seconds), "DUET_SHAPE_USERS": str(args.users)}
        # locust in its own process: its gevent monkey-patching must not reach this one.
        locust = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"), "--headless",
             "--host", stack.transformer_http, "--csv", str(prefix), "--only-summary", args.user_class],
            cwd=ROOT, env=env, stdout=(config.run_dir / "locust.log").open("wb"), stderr=subprocess.STDOUT,
        )
        started = time.monotonic()
        with Progress(TextColumn("[bold]soak"), BarColumn(), TextColumn("{task.fields[rss]}"), TimeElapsedColumn(),
                      console=console) as progress:
            task = progress.add_task("soak", total=args.seconds, rss="")
            while locust.poll() is None:
                now = time.monotonic() - started
                for name, series in samples.items():
                    process = stack.processes.get(name)
                    if process is not None:
                        series.append((now, group_rss_bytes(process.pid)))
                shown = "  ".join(f"{n} {s[-1][1] / 2**20:.0f} MiB" for n, s in samples.items() if s)
                progress.update(task, completed=min(now, args.seconds), rss=shown)
                time.sleep(args.interval)
        restarts = [event.process for event in stack.events if event.kind == "exited"]
    finally:
        stack.stop()
    totals = _locust_totals(Path(f"{prefix}_stats.csv"))
    window = max(args.interval * 3, 30.0)
    growths = {name: growth(values, args.warmup, window) for name, values in samples.items()}
    verdict = {
        "seconds": args.seconds, "users": args.users, "user_class": args.user_class,
        "predictor": stack.predictor_kind, **totals, "restarts": restarts,
        "rss_growth": growths, "rss_mib_after_warmup": {
            n: round(next(rss for t, rss in s if t >= args.warmup) / 2**20, 1) for n, s in samples.items()},
        "rss_mib_at_end": {n: round(s[-1][1] / 2**20, 1) for n, s in samples.items()},
        "passed": totals["failures"] == 0 and not restarts and all(g <= args.max_growth for g in growths.values()),
    }
    (config.run_dir / "soak.json").write_text(json.dumps({"verdict": verdict, "samples": samples}, indent=1))
    console.print_json(json.dumps(verdict))
    sys.exit(0 if verdict["passed"] else 1)


if __name__ == "__main__":
    main()
