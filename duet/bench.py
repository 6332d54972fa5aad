"""`duet bench`: duet measured against what it replaces, in one run on the same cores.

For sentiment it starts, side by side: the ceiling (ONNX Runtime alone on the model file,
`benchmarks/ort_ceiling.py`), the naive baseline (one FastAPI process calling ONNX Runtime per request,
`benchmarks/naive_sentiment_server.py`, the same model file) and duet end to end (the local stack: transformer in
front of Triton). Each (texts per request, users) step runs locust in its own process against the naive server,
then against duet, closed loop; it records req/s, p50/p95/p99, errors by kind, the CPU milliseconds per request
of every server process (read from the kernel, children included) and Triton's achieved batch size. Ratios are
duet / naive (throughput) and duet / ceiling (texts per second). The load generator's own CPU per request is
recorded too, and the headline comparison (one text per request) is repeated with wrk, a C client (`duet/wrk.py`):
on few cores the client competes with the servers. Output: a rich table, a markdown section (`--markdown`) and a
throughput-vs-p99 plot (`--plot`).
"""

from __future__ import annotations

import csv
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import httpx
import psutil
import typer
from rich.console import Console
from rich.table import Table

from loadtests.payloads import headlines, sentiment_body
from transformers_pre import registry

from . import wrk
from .paths import MODEL_REPOSITORY, ROOT, RUN_DIR
from .progress import progress_bar
from .wrk import WrkRun

bench_app = typer.Typer(help="Benchmarks: duet against the naive server and the model alone.",
                        invoke_without_command=True)
console = Console()
SECTION = "## Sentiment: duet against the naive server and the model alone"
ERROR_KINDS = ("429", "503", "other")


@dataclass
class ProcessGroup:
    """Named server processes whose CPU time is charged to requests: the roots and/or all their descendants."""

    name: str
    pids: list[int]
    roots: bool = True  # False: descendants only (Triton's Python-backend stubs, without tritonserver)
    descendants: bool = True  # False: the roots only (tritonserver, without its stubs)
    _seen: dict[int, float] = field(default_factory=dict)

    def cpu_seconds(self) -> float:
        """User + system seconds used so far; processes that ended keep their last reading."""
        for pid in self.pids:
            try:
                root = psutil.Process(pid)
                members = (root.children(recursive=True) if self.descendants else []) + ([root] if self.roots else [])
            except psutil.Error:
                continue
            for process in members:
                try:
                    times = process.cpu_times()
                    self._seen[process.pid] = times.user + times.system
                except psutil.Error:
                    pass
        return sum(self._seen.values())


@dataclass(frozen=True)
class StepResult:
    system: str
    texts: int
    users: int
    requests: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: dict[str, int]
    cpu_ms: dict[str, float]  # process group -> CPU ms per request
    triton_batch: float | None = None
    client_cpu_ms: float | None = None  # the load generator's own CPU per request

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def wait_ready(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f}s")


@contextmanager
def naive_server(model_dir: Path, port: int) -> Iterator[subprocess.Popen]:
    """The naive FastAPI + ONNX Runtime server on 127.0.0.1:`port`, stopped on exit."""
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "naive_sentiment_server.py"), "--model-dir", str(model_dir),
         "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}/v2/health/ready")
        yield process
    finally:
        process.terminate()
        process.wait(timeout=20)


def ceiling(model_dir: Path, batch: int, seconds: float) -> dict[str, float]:
    """ONNX Runtime alone (`benchmarks/ort_ceiling.py`) in its own process."""
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "ort_ceiling.py"), "--model-dir", str(model_dir), "--batch",
         str(batch), "--seconds", str(seconds)], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def classify_failure(error: str) -> str:
    """A locust failure message -> "429", "503" or "other" (the locustfile names 429 and 503 on their own)."""
    for kind in ("429", "503"):
        if kind in error:
            return kind
    return "other"


def run_locust(url: str, user_class: str, users: int, seconds: int, env: dict[str, str]) -> dict:
    """One closed-loop headless locust run in its own process (gevent must not share ours); parsed CSV stats."""
    with tempfile.TemporaryDirectory() as folder:
        prefix = Path(folder) / "run"
        command = [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"), "--headless",
                   "--host", url, "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--csv", str(prefix),
                   "--only-summary", "--reset-stats", "--exit-code-on-error", "0", user_class]
        environment = {**os.environ, "PYTHONPATH": str(ROOT), "DUET_THINK_SECONDS": "0",
                       "DUET_MAX_FAILURE_RATIO": "1", **env}
        cpu_before = children_cpu_seconds()
        completed = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True,
                                   check=False, timeout=seconds + 180)
        # locust has been waited for: its CPU (start-up included) is now in this process's children's totals.
        client_cpu_s = children_cpu_seconds() - cpu_before
        stats_file = prefix.parent / "run_stats.csv"
        if not stats_file.exists():
            raise RuntimeError(f"locust wrote no statistics:\n{completed.stderr[-2000:]}")
        rows = list(csv.DictReader(stats_file.open()))
        failures = list(csv.DictReader((prefix.parent / "run_failures.csv").open()))
    stats = next(row for row in rows if row["Name"] == "Aggregated")
    errors = dict.fromkeys(ERROR_KINDS, 0)
    for failure in failures:
        errors[classify_failure(failure["Error"])] += int(failure["Occurrences"])
    return {"requests": int(stats["Request Count"]), "rps": float(stats["Requests/s"]),
            "p50": float(stats["50%"]), "p95": float(stats["95%"]), "p99": float(stats["99%"]), "errors": errors,
            "client_cpu_s": client_cpu_s}


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's children that have been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def triton_counts(metrics_url: str | None, model: str) -> tuple[float, float]:
    """(inference count, execution count) of one Triton model, from its Prometheus metrics."""
    if not metrics_url:
        return 0.0, 0.0
    from .local.prometheus import metric_totals

    totals = metric_totals(httpx.get(metrics_url, timeout=10).text, ("nv_inference_count", "nv_inference_exec_count"),
                           model=model)
    return totals["nv_inference_count"], totals["nv_inference_exec_count"]


def measure_step(system: str, url: str, texts: int, users: int, seconds: int, groups: list[ProcessGroup],
                 metrics_url: str | None = None) -> StepResult:
    """One load step against one system, with the CPU its processes spent on it."""
    cpu_before = {group.name: group.cpu_seconds() for group in groups}
    triton_model = registry.model("sentiment").triton_model
    batch_before = triton_counts(metrics_url, triton_model)
    run = run_locust(url, "SentimentUser", users, seconds, {"DUET_SENTIMENT_BATCH": str(texts)})
    cpu_after = {group.name: group.cpu_seconds() for group in groups}
    batch_after = triton_counts(metrics_url, triton_model)
    executions = batch_after[1] - batch_before[1]
    # CPU is read around the whole locust process (spawn and warm-up included), so it is charged to all the
    # requests it served: a slight overestimate, the same for every system.
    served = max(1, run["requests"])
    return StepResult(
        system=system, texts=texts, users=users, requests=run["requests"], rps=run["rps"], p50_ms=run["p50"],
        p95_ms=run["p95"], p99_ms=run["p99"], errors=run["errors"],
        cpu_ms={name: 1000 * (cpu_after[name] - cpu_before[name]) / served for name in cpu_before},
        triton_batch=(batch_after[0] - batch_before[0]) / executions if executions else None,
        client_cpu_ms=1000 * run["client_cpu_s"] / served,
    )


def ratio_rows(results: list[StepResult], ceilings: dict[int, dict[str, float]]) -> list[dict]:
    """One row per (texts, users): both systems side by side with the ratios."""
    rows = []
    keys = sorted({(r.texts, r.users) for r in results})
    for texts, users in keys:
        by_system = {r.system: r for r in results if (r.texts, r.users) == (texts, users)}
        duet, naive = by_system.get("duet"), by_system.get("naive")
        ceiling_texts = ceilings.get(texts, {}).get("texts_per_s")
        rows.append({
            "texts": texts, "users": users, "duet": duet, "naive": naive,
            "vs_naive": duet.rps / naive.rps if duet and naive and naive.rps else None,
            "vs_ceiling": duet.rps * texts / ceiling_texts if duet and ceiling_texts else None,
        })
    return rows


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _errors(result: StepResult) -> str:
    parts = [f"{count} x {kind}" for kind, count in result.errors.items() if count]
    return ", ".join(parts) or "0"


def _cpu(result: StepResult) -> str:
    return ", ".join(f"{name} {ms:.1f}" for name, ms in result.cpu_ms.items())


DETAIL_HEADERS = ["texts/req", "users", "system", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors",
                  "CPU ms per request", "Triton batch", "locust CPU ms per request"]
CLIENT_HEADERS = ["client", "users", "duet req/s", "naive req/s", "duet / naive", "duet p99 ms", "naive p99 ms",
                  "errors (duet, naive)", "client CPU ms per request (duet, naive)"]
RATIO_HEADERS = ["texts/req", "users", "duet req/s", "naive req/s", "duet / naive", "duet texts/s / ceiling",
                 "duet p99 / naive p99"]


def detail_cells(result: StepResult) -> list[str]:
    return [str(result.texts), str(result.users), result.system, f"{result.rps:.1f}", f"{result.p50_ms:.0f}",
            f"{result.p95_ms:.0f}", f"{result.p99_ms:.0f}", _errors(result), _cpu(result),
            _fmt(result.triton_batch, ".1f"), _fmt(result.client_cpu_ms, ".1f")]


def client_rows(results: list[StepResult], wrk_runs: dict[str, WrkRun], users: int) -> list[list[str]]:
    """The headline comparison (one text per request, `users` connections) as each client measured it."""
    rows = []
    locust = {r.system: r for r in results if r.texts == 1 and r.users == users}
    if "duet" in locust and "naive" in locust:
        duet, naive = locust["duet"], locust["naive"]
        rows.append(["locust (Python)", str(users), f"{duet.rps:.1f}", f"{naive.rps:.1f}",
                     _fmt(duet.rps / naive.rps if naive.rps else None), f"{duet.p99_ms:.0f}", f"{naive.p99_ms:.0f}",
                     f"{duet.error_count}, {naive.error_count}",
                     f"{_fmt(duet.client_cpu_ms, '.2f')}, {_fmt(naive.client_cpu_ms, '.2f')}"])
    if "duet" in wrk_runs and "naive" in wrk_runs:
        duet_run, naive_run = wrk_runs["duet"], wrk_runs["naive"]
        rows.append(["wrk (C)", str(users), f"{duet_run.rps:.1f}", f"{naive_run.rps:.1f}",
                     _fmt(duet_run.rps / naive_run.rps if naive_run.rps else None), f"{duet_run.p99_ms:.0f}",
                     f"{naive_run.p99_ms:.0f}", f"{duet_run.failed}, {naive_run.failed}",
                     f"{duet_run.client_cpu_ms:.2f}, {naive_run.client_cpu_ms:.2f}"])
    return rows


def ratio_cells(row: dict) -> list[str]:
    duet, naive = row["duet"], row["naive"]
    p99 = duet.p99_ms / naive.p99_ms if duet and naive and naive.p99_ms else None
    return [str(row["texts"]), str(row["users"]), _fmt(duet and duet.rps, ".1f"), _fmt(naive and naive.rps, ".1f"),
            _fmt(row["vs_naive"]), _fmt(row["vs_ceiling"]), _fmt(p99)]


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def markdown_section(results: list[StepResult], ceilings: dict[int, dict[str, float]], notes: str,
                     plot: Path | None, wrk_runs: dict[str, WrkRun] | None = None, wrk_users: int = 32) -> str:
    ceiling_lines = [f"- ONNX Runtime alone, batch {batch}: {c['texts_per_s']:.0f} texts/s "
                     f"({c['median_ms']:.1f} ms per call)" for batch, c in sorted(ceilings.items())]
    parts = [SECTION, "", f"`make bench` (`duet bench`), {date.today().isoformat()}, {machine()}. {notes}", "",
             "The ceiling (the model alone, same file, same cores, no server):", "", *ceiling_lines, "",
             ("Ratios (duet / naive > 1 means duet serves more; duet / ceiling is the share of the model-alone "
              "rate that reaches clients):"), "",
             markdown_table(RATIO_HEADERS, [ratio_cells(row) for row in ratio_rows(results, ceilings)]), "",
             ("Every step (CPU ms per request: CPU seconds of each server process and its children during the "
              "step, divided by the requests served; locust's own CPU likewise):"), "",
             markdown_table(DETAIL_HEADERS, [detail_cells(r) for r in results])]
    clients = client_rows(results, wrk_runs or {}, wrk_users)
    if clients:
        parts += ["", ("The headline comparison by client (one text per request; the client shares the cores with "
                       "the servers, so a client that needs less CPU per request leaves more to them):"), "",
                  markdown_table(CLIENT_HEADERS, clients)]
    if plot is not None:
        parts += ["", f"![throughput against p99]({plot.name})"]
    return "\n".join(parts) + "\n"


def replace_section(path: Path, heading: str, text: str) -> None:
    """Replace the `heading` section of a markdown file (up to the next `## `), or append it."""
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    start = current.find(heading + "\n")
    if start < 0:
        path.write_text(current.rstrip("\n") + "\n\n" + text)
        return
    end = current.find("\n## ", start + len(heading))
    path.write_text(current[:start] + text + (current[end:] if end >= 0 else ""))


def plot_results(results: list[StepResult], ceilings: dict[int, dict[str, float]], path: Path) -> None:
    """Throughput against p99 latency, one line per system and texts per request, users annotated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(ceilings) or 1, figsize=(6 * max(1, len(ceilings)), 4.5), squeeze=False)
    for axis, texts in zip(axes[0], sorted(ceilings)):
        for system, style in (("duet", "o-"), ("naive", "s--")):
            points = [r for r in results if r.system == system and r.texts == texts]
            axis.plot([r.p99_ms for r in points], [r.rps for r in points], style, label=system)
            for r in points:
                axis.annotate(f"c={r.users}", (r.p99_ms, r.rps), textcoords="offset points", xytext=(4, 4),
                              fontsize=8)
        axis.axhline(ceilings[texts]["texts_per_s"] / texts, color="grey", linestyle=":",
                     label="model alone (ceiling)")
        axis.set_xscale("log")
        axis.set_xlabel("p99 latency (ms, log)")
        axis.set_ylabel("requests per second")
        axis.set_title(f"sentiment, {texts} text{'s' if texts > 1 else ''} per request")
        axis.legend()
        axis.grid(alpha=0.3)
    figure.suptitle(f"duet vs a naive FastAPI + ONNX Runtime server ({machine()}, {date.today().isoformat()})",
                    fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def stack_groups(stack) -> list[ProcessGroup]:
    """The local stack's processes as CPU accounts: transformer, predictor (server and its stubs apart)."""
    transformer = stack.processes["transformer"].pid
    predictor = stack.processes["predictor"].pid
    if stack.predictor_kind == "triton":
        return [ProcessGroup("transformer", [transformer]),
                ProcessGroup("tritonserver", [predictor], descendants=False),
                ProcessGroup("python stub", [predictor], roots=False)]
    return [ProcessGroup("transformer", [transformer]), ProcessGroup("ORT predictor", [predictor])]


@bench_app.callback()
def bench(
    users: str = typer.Option("1,8,32,64", help="Concurrent closed-loop users per step."),
    texts: str = typer.Option("1,8", help="Texts per request, one sweep each (1 is the headline case)."),
    seconds: int = typer.Option(15, help="Duration of each locust step."),
    predictor: str = typer.Option("triton", help="triton or onnxruntime."),
    model_repository: Path = typer.Option(MODEL_REPOSITORY, envvar="DUET_MODEL_REPOSITORY"),
    mammography: bool = typer.Option(True, help="Also run the per-view mammography preprocessing benchmark "
                                     "(benchmarks/bench_dicom.py, 4096 x 3328 views: minutes)."),
    sentiment: bool = typer.Option(True, help="Run the sentiment comparison (--no-sentiment: studies only)."),
    studies: bool = typer.Option(True, help="Run the mammography step load (studies/s per transformer core)"),
    study_users: str = typer.Option("1,2,4,8", help="Concurrent closed-loop studies, one step each."),
    study_sizes: str = typer.Option("1024x832", help="View sizes (rows x columns) of the step load, e.g. "
                                    "1024x832,4096x3328."),
    study_syntaxes: str = typer.Option("explicit,j2k", help="Transfer syntaxes of the step load (explicit, "
                                       "j2k, jpegls, rle, jpeg, htj2k)."),
    study_seconds: int = typer.Option(8, help="Duration of each step of the step load."),
    markdown_out: Path | None = typer.Option(None, "--markdown", help="Rewrite the sentiment section of this file."),
    wrk_users: int = typer.Option(32, help="Connections of the wrk cross-check of the headline case (0: none)."),
    plot: Path | None = typer.Option(None, help="Write the throughput-vs-p99 PNG here (default: beside --markdown)."),
) -> None:
    """duet against the naive server and the model alone: req/s, p50/p95/p99, errors, CPU ms per request; then
    mammography studies/s under a step load, and the sizing figures per core of both models."""
    results = (compare_sentiment(users, texts, seconds, predictor, model_repository, markdown_out, wrk_users,
                                 plot) if sentiment else [])
    if studies:
        from . import bench_studies

        steps, kind = bench_studies.run_study_steps(
            [size for size in study_sizes.split(",") if size],
            [syntax for syntax in study_syntaxes.split(",") if syntax],
            [int(count) for count in study_users.split(",") if count], study_seconds, model_repository,
            predictor, console)
        bench_studies.show(steps, results, console)
        if markdown_out is not None:
            load = os.getloadavg()[0]
            bench_studies.write_markdown(markdown_out, steps, results, study_seconds, kind, load)
            console.print(f"sections {bench_studies.SECTION!r} and {bench_studies.SIZING_SECTION!r} written "
                          f"to {markdown_out}")
    if mammography:
        from benchmarks import bench_dicom

        bench_dicom.main(["--markdown", str(markdown_out)] if markdown_out is not None else [])


def compare_sentiment(users: str, texts: str, seconds: int, predictor: str, model_repository: Path,
                      markdown_out: Path | None, wrk_users: int, plot: Path | None) -> list[StepResult]:
    """The sentiment comparison: ceiling, naive server and duet, step by step; its results."""
    from .local.stack import LocalStack, StackConfig, free_ports
    from .local.triton import TritonPorts

    model_dir = model_repository / registry.model("sentiment").triton_model
    user_steps = [int(u) for u in users.split(",") if u]
    text_steps = [int(t) for t in texts.split(",") if t]
    if plot is None and markdown_out is not None:
        plot = markdown_out.parent / "bench-sentiment.png"
    http, grpc, t_http, t_grpc, t_metrics, naive_port = free_ports(6)
    stack = LocalStack(StackConfig(model_repository=model_repository, run_dir=RUN_DIR / "bench", http_port=http,
                                   grpc_port=grpc, triton=TritonPorts(t_http, t_grpc, t_metrics),
                                   predictor=predictor, models=("sentiment",)), say=console.print)
    results: list[StepResult] = []
    ceilings: dict[int, dict[str, float]] = {}
    wrk_runs: dict[str, WrkRun] = {}
    with progress_bar(console) as progress:
        cross_check = wrk_users > 0 and 1 in text_steps and wrk.available()
        total = len(text_steps) * (1 + 2 * len(user_steps)) + (2 if cross_check else 0)
        task = progress.add_task("ceiling: ONNX Runtime alone", total=total)
        for count in text_steps:
            ceilings[count] = ceiling(model_dir, count, max(3.0, seconds / 3))
            progress.advance(task)
        progress.update(task, description="starting the naive server and duet")
        with naive_server(model_dir, naive_port) as naive:
            stack.start()
            try:
                groups = stack_groups(stack)
                metrics_url = stack.triton_metrics if stack.predictor_kind == "triton" else None
                targets = [("naive", f"http://127.0.0.1:{naive_port}", [ProcessGroup("naive server", [naive.pid])],
                            None),
                           ("duet", stack.transformer_http, groups, metrics_url)]
                for count in text_steps:
                    for user_count in user_steps:
                        for system, url, system_groups, metrics in targets:
                            progress.update(task, description=f"{system}: {count} text(s)/request, {user_count} users")
                            results.append(measure_step(system, url, count, user_count, seconds, system_groups,
                                                        metrics))
                            progress.advance(task)
                if cross_check:
                    body, headers = sentiment_body(headlines(1))
                    for system, url, _, _ in targets:
                        progress.update(task, description=f"{system}: wrk, 1 text/request, {wrk_users} connections")
                        wrk_runs[system] = wrk.run(f"{url}/v2/models/sentiment/infer", body, headers, wrk_users,
                                                   seconds)
                        progress.advance(task)
            finally:
                stack.stop()
    show(results, ceilings, wrk_runs, wrk_users)
    if wrk_users > 0 and not wrk_runs:
        console.print("[yellow]no wrk cross-check: wrk is not installed (Debian/Ubuntu: apt-get install wrk) or "
                      "the sweep has no 1-text step[/]")
    notes = (f"Predictor: {stack.predictor_kind}, FP32 model. Every figure below comes from locust (Python, closed "
             f"loop, no think time, {seconds} s per step after all users started; naive and duet steps alternate) "
             "unless its row says wrk.")
    if plot is not None:
        plot_results(results, ceilings, plot)
        console.print(f"plot written to {plot}")
    if markdown_out is not None:
        replace_section(markdown_out, SECTION, markdown_section(results, ceilings, notes, plot, wrk_runs, wrk_users))
        console.print(f"section {SECTION!r} written to {markdown_out}")
    return results


def show(results: list[StepResult], ceilings: dict[int, dict[str, float]], wrk_runs: dict[str, WrkRun],
         wrk_users: int) -> None:
    for batch, result in sorted(ceilings.items()):
        console.print(f"ceiling, batch {batch}: {result['texts_per_s']:.0f} texts/s "
                      f"({result['median_ms']:.1f} ms/call)")
    table = Table(*RATIO_HEADERS, title=f"duet vs naive ({machine()})")
    for row in ratio_rows(results, ceilings):
        table.add_row(*ratio_cells(row))
    console.print(table)
    detail = Table(*DETAIL_HEADERS, title="every step (locust)")
    for result in results:
        detail.add_row(*detail_cells(result))
    console.print(detail)
    clients = client_rows(results, wrk_runs, wrk_users)
    if clients:
        by_client = Table(*CLIENT_HEADERS, title="the headline case by client")
        for row in clients:
            by_client.add_row(*row)
        console.print(by_client)
