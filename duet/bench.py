"""`duet bench`: end-to-end load benchmarks of the local stack with locust, plus the DICOM micro-benchmarks.

Starts its own stack on free 127.0.0.1 ports (or uses `--url`), runs locust headless in its own process for each
(model, users) step, and reports throughput, latency percentiles, failures and the batch size Triton achieved.
"""

from __future__ import annotations

import csv
import os
import platform
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from .paths import MODEL_REPOSITORY, ROOT, RUN_DIR

bench_app = typer.Typer(help="Benchmarks (locust against the local stack, DICOM preprocessing).",
                        invoke_without_command=True)
console = Console()


@dataclass(frozen=True)
class LoadResult:
    model: str
    users: int
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    batch_size: float | None

    def row(self) -> list[str]:
        batch = f"{self.batch_size:.1f}" if self.batch_size else "-"
        return [self.model, str(self.users), str(self.requests), str(self.failures), f"{self.rps:.1f}",
                f"{self.p50_ms:.0f}", f"{self.p95_ms:.0f}", f"{self.p99_ms:.0f}", batch]


HEADERS = ["model", "users", "requests", "failures", "req/s", "p50 ms", "p95 ms", "p99 ms", "Triton batch"]
USER_CLASSES = {"sentiment": "SentimentUser", "mammography": "MammographyUser"}
TRITON_MODELS = {"sentiment": "sentiment", "mammography": "mammo_detector"}


def _triton_counts(metrics_url: str | None, model: str) -> tuple[float, float]:
    if not metrics_url:
        return 0.0, 0.0
    text = httpx.get(metrics_url, timeout=10).text

    def total(name: str) -> float:
        return sum(float(v) for v in re.findall(rf'^{name}{{[^}}]*model="{model}"[^}}]*}} (\S+)$', text, re.MULTILINE))

    return total("nv_inference_count"), total("nv_inference_exec_count")


def run_locust(url: str, model: str, users: int, seconds: int, metrics_url: str | None, env: dict[str, str]) -> LoadResult:
    """One headless locust run in its own process (gevent must not share ours); parses its CSV stats."""
    before = _triton_counts(metrics_url, TRITON_MODELS[model])
    with tempfile.TemporaryDirectory() as folder:
        prefix = Path(folder) / "run"
        command = [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"), "--headless",
                   "--host", url, "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--csv", str(prefix),
                   "--only-summary", "--exit-code-on-error", "0", USER_CLASSES[model]]
        subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                       capture_output=True, text=True, check=False, timeout=seconds + 180)
        rows = list(csv.DictReader((prefix.parent / "run_stats.csv").open()))
    stats = next(row for row in rows if row["Name"] == model)
    after = _triton_counts(metrics_url, TRITON_MODELS[model])
    executions = after[1] - before[1]
    return LoadResult(
        model=model, users=users, requests=int(stats["Request Count"]), failures=int(stats["Failure Count"]),
        rps=float(stats["Requests/s"]), p50_ms=float(stats["50%"]), p95_ms=float(stats["95%"]),
        p99_ms=float(stats["99%"]), batch_size=(after[0] - before[0]) / executions if executions else None,
    )


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def markdown(results: list[LoadResult], title: str, notes: str) -> str:
    lines = [f"### {title}", "", f"{date.today().isoformat()}, {machine()}. {notes}", "",
             "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(result.row()) + " |" for result in results]
    return "\n".join(lines) + "\n"


@bench_app.callback()
def bench(
    models: str = typer.Option("sentiment,mammography", help="Comma-separated public models to load."),
    users: str = typer.Option("1,8,32", help="Concurrent users per step (sentiment)."),
    study_users: str = typer.Option("1,4", help="Concurrent users per step (mammography)."),
    seconds: int = typer.Option(20, help="Duration of each step."),
    predictor: str = typer.Option("triton", help="triton or onnxruntime (when the stack is started here)."),
    int8: bool = typer.Option(False, help="Serve the INT8 sentiment variant."),
    url: str | None = typer.Option(None, help="Use a running stack's transformers instead of starting one."),
    model_repository: Path = typer.Option(MODEL_REPOSITORY, envvar="DUET_MODEL_REPOSITORY"),
    dicom: bool = typer.Option(True, help="Also run the DICOM preprocessing micro-benchmark."),
    markdown_out: Path | None = typer.Option(None, "--markdown", help="Append the tables as markdown here."),
) -> None:
    """Measure the stack under load: req/s, p50/p95/p99 latency, failures, Triton's achieved batch size."""
    from .local.stack import LocalStack, StackConfig, free_ports
    from .local.triton import TritonPorts

    wanted = [m for m in models.split(",") if m]
    stack = None
    metrics_url = None
    if url is None:
        http, grpc, t_http, t_grpc, t_metrics = free_ports(5)
        stack = LocalStack(StackConfig(model_repository=model_repository, run_dir=RUN_DIR / "bench", http_port=http, grpc_port=grpc,
                                       triton=TritonPorts(t_http, t_grpc, t_metrics), predictor=predictor,
                                       models=tuple(wanted), int8=int8), say=console.print)
        with console.status("starting the stack..."):
            stack.start()
        url = stack.transformer_http
        # The ONNX Runtime predictor has no Triton metrics endpoint.
        metrics_url = stack.triton_metrics if stack.predictor_kind == "triton" else None
    steps = [(m, int(u)) for m in wanted for u in (users if m == "sentiment" else study_users).split(",")]
    results: list[LoadResult] = []
    try:
        with Progress(console=console) as progress:
            task = progress.add_task("locust steps", total=len(steps))
            for model, count in steps:
                progress.update(task, description=f"{model} x{count} users")
                results.append(run_locust(url, model, count, seconds, metrics_url, {}))
                progress.advance(task)
    finally:
        if stack:
            stack.stop()
    table = Table(*HEADERS, title=f"duet under load ({machine()})")
    for result in results:
        table.add_row(*result.row())
    console.print(table)
    predictor_kind = stack.predictor_kind if stack else "running stack"
    notes = (f"Predictor: {predictor_kind}{' (INT8 sentiment)' if int8 else ''}; {seconds} s per step; "
             "sentiment requests carry 8 headlines, mammography requests a 4-view 2048x1664 12-bit study.")
    text = markdown(results, "End-to-end load (locust)", notes)
    if dicom and (ROOT / "benchmarks" / "bench_dicom.py").exists() and "mammography" in wanted:
        completed = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_dicom.py")], cwd=ROOT,
                                   env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
        if completed.returncode != 0:
            console.print("[red]DICOM micro-benchmark failed[/]")
    if markdown_out:
        with markdown_out.open("a") as handle:
            handle.write("\n" + text)
        console.print(f"appended to {markdown_out}")
