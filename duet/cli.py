"""The `duet` command line: run the local stack, build models, send requests, synthesise DICOM, benchmark."""

from __future__ import annotations

import signal
import threading
import time
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .paths import MODEL_REPOSITORY, RUN_DIR, cache_dir

app = typer.Typer(help="duet: KServe transformers in front of Triton, for mammography and sentiment.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
models_app = typer.Typer(help="Build the shipped models.", no_args_is_help=True)
app.add_typer(models_app, name="models")
console = Console()


def _mount_optional(module: str, attribute: str, name: str) -> None:
    # Sub-apps with heavier dependencies; the CLI still works for the rest where one is missing.
    try:
        sub_app = getattr(__import__(f"duet.{module}", fromlist=[attribute]), attribute)
    except (ImportError, AttributeError):
        return
    app.add_typer(sub_app, name=name)


def progress_bar() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console)


class Predictor(str, Enum):
    auto = "auto"
    triton = "triton"
    onnxruntime = "onnxruntime"


class Only(str, Enum):
    detector = "detector"
    sentiment = "sentiment"


@models_app.command("build")
def models_build(
    only: Only | None = typer.Option(None, help="Build one model only."),
    out: Path = typer.Option(MODEL_REPOSITORY, help="Triton model repository to install into."),
    quick: bool = typer.Option(False, help="A few training steps: for tests, not for serving."),
    force: bool = typer.Option(False, help="Rebuild even when the cache holds this recipe."),
) -> None:
    """Train, export, verify and install the models (cached by recipe hash)."""
    from predictors.build import ALIASES, build_model

    names = [ALIASES[only.value]] if only else ["mammo_detector", "sentiment"]
    with progress_bar() as progress:
        for name in names:
            started = time.monotonic()
            card = build_model(name, out, cache_dir(), progress, quick=quick, force=force, say=console.print)
            metrics = card.get("metrics", {})
            shown = ", ".join(f"{k}={v:.3f}" for k, v in metrics.items() if isinstance(v, float))
            console.print(f"[green]{name}[/] ready in {time.monotonic() - started:.0f}s  {shown}")


@app.command()
def up(
    http_port: int = typer.Option(8080, envvar="DUET_HTTP_PORT", help="Transformers' v2 REST port."),
    grpc_port: int = typer.Option(8081, envvar="DUET_GRPC_PORT", help="Transformers' v2 gRPC port."),
    triton_http_port: int = typer.Option(8000, envvar="DUET_TRITON_HTTP_PORT"),
    triton_grpc_port: int = typer.Option(8001, envvar="DUET_TRITON_GRPC_PORT"),
    triton_metrics_port: int = typer.Option(8002, envvar="DUET_TRITON_METRICS_PORT"),
    model_repository: Path = typer.Option(MODEL_REPOSITORY, envvar="DUET_MODEL_REPOSITORY"),
    run_dir: Path = typer.Option(RUN_DIR, envvar="DUET_RUN_DIR", help="Logs and the generated local repository."),
    predictor: Predictor = typer.Option(Predictor.auto, envvar="DUET_PREDICTOR",
                                        help="Triton (bundled binary), the ONNX Runtime fallback, or auto."),
    int8: bool = typer.Option(False, envvar="DUET_INT8", help="Serve INT8 variants where built (CPU speed)."),
    workers: int = typer.Option(1, envvar="DUET_WORKERS", help="Transformer REST worker processes."),
    tensorrt: bool = typer.Option(False, envvar="DUET_TENSORRT",
                                  help="ONNX Runtime predictor: use TensorRT where onnxruntime-gpu offers it."),
    prometheus: bool = typer.Option(False, help="Also run Prometheus on 127.0.0.1:9090 with duet's rules."),
    prometheus_port: int = typer.Option(9090, envvar="DUET_PROMETHEUS_PORT"),
) -> None:
    """Run the local stack on 127.0.0.1 until Ctrl-C: Triton + the mammography and sentiment transformers."""
    from .local.stack import LocalStack, StackConfig, StackError
    from .local.triton import TritonPorts

    config = StackConfig(
        model_repository=model_repository.resolve(), run_dir=run_dir.resolve(), http_port=http_port,
        grpc_port=grpc_port, triton=TritonPorts(triton_http_port, triton_grpc_port, triton_metrics_port),
        predictor=predictor.value, int8=int8, workers=workers, tensorrt=tensorrt,
    )
    stack = LocalStack(config, say=console.print)
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    with console.status("starting the predictor and the transformers..."):
        try:
            stack.start()
        except StackError as error:
            console.print(f"[red]{error}[/]")
            raise typer.Exit(1) from None
    prom = None
    if prometheus:
        from .local.prometheus import PrometheusServer

        prom = PrometheusServer(stack, port=prometheus_port)
        prom.start()
    _print_endpoints(stack, prom)
    try:
        _follow_logs(stack, stopping)
    finally:
        console.print("stopping: letting in-flight requests finish...")
        if prom:
            prom.stop()
        stack.stop()
        console.print("stopped.")


def _print_endpoints(stack, prom) -> None:
    console.print(f"[green]duet is up[/] (predictor: {stack.predictor_kind}, models: {', '.join(stack.models)})")
    console.print(f"  transformers  REST {stack.transformer_http}   gRPC {stack.transformer_grpc}")
    console.print(f"  triton        REST {stack.triton_http}   gRPC {stack.triton_grpc}   metrics {stack.triton_metrics}")
    if prom:
        console.print(f"  prometheus    {prom.url}")
    console.print(f"  logs          {stack.config.run_dir}")
    if "sentiment" in stack.models:
        console.print("\nTry:\n  curl -s " + stack.transformer_http + "/v2/models/sentiment/infer -H 'content-type: application/json' "
                      "-d '{\"inputs\":[{\"name\":\"text\",\"shape\":[1],\"datatype\":\"BYTES\",\"data\":[\"Markets rally as inflation cools\"]}]}'",
                      soft_wrap=True)
    if "mammography" in stack.models:
        console.print("  duet dicom synth --out /tmp/study && duet infer mammography /tmp/study/*.dcm")
    console.print("\nCtrl-C stops everything.")


def _follow_logs(stack, stopping: threading.Event) -> None:
    """Print new warning and error lines of every process until a signal arrives or a process dies."""
    offsets = {name: path.stat().st_size if path.exists() else 0 for name, path in stack.logs.items()}
    while not stopping.wait(0.5):
        for name, path in stack.logs.items():
            with path.open("rb") as handle:
                handle.seek(offsets[name])
                chunk = handle.read()
                offsets[name] += len(chunk)
            for line in chunk.decode("utf-8", "replace").splitlines():
                lowered = line.lower()
                if any(word in lowered for word in ('"warning"', '"error"', " error", "warning:", "e1")):
                    console.print(f"[dim]{name}[/] {line}", markup=False, highlight=False)
        died = stack.exited()
        if died:
            console.print(f"[red]{died} exited; see {stack.logs[died]}[/]")
            raise typer.Exit(1)


@app.command()
def infer(
    model: str = typer.Argument(..., help="sentiment or mammography"),
    inputs: list[str] = typer.Argument(..., help="Texts (sentiment) or DICOM files of one study (mammography)."),
    url: str = typer.Option("127.0.0.1:8080", envvar="DUET_URL", help="Transformers' REST host:port."),
    report: Path | None = typer.Option(None, help="mammography: ask for a DICOM SR and write it here."),
) -> None:
    """Send one real request to a running stack and print the result as a table."""
    from .infer import infer_mammography, infer_sentiment

    if model == "sentiment":
        infer_sentiment(url, inputs, console)
    elif model == "mammography":
        infer_mammography(url, [Path(p) for p in inputs], console, report)
    else:
        raise typer.BadParameter("model must be sentiment or mammography")


_mount_optional("dicom_synth", "dicom_app", "dicom")
_mount_optional("cluster", "cluster_app", "cluster")
_mount_optional("bench", "bench_app", "bench")

if __name__ == "__main__":
    app()
