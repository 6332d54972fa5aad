"""The `duet` command line: run the local stack, build models, send requests, synthesise DICOM, benchmark."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress

from transformers_pre import registry

from . import artifact_commands
from .paths import MODEL_REPOSITORY, RUN_DIR, cache_dir
from .progress import progress_bar as line_progress_bar

app = typer.Typer(help="duet: KServe transformers in front of Triton, for mammography and sentiment.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
models_app = typer.Typer(help="Build, sign, verify and encrypt the shipped models.", no_args_is_help=True)
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
    return line_progress_bar(console)


class Predictor(str, Enum):
    auto = "auto"
    triton = "triton"
    onnxruntime = "onnxruntime"


# `duet models build --only`: each model's build package.
Only = Enum("Only", {spec.build_name: spec.build_name for spec in registry.MODELS.values()}, type=str)


@models_app.command("build")
def models_build(
    only: list[Only] = typer.Option([], help="Build this model only; repeatable."),
    out: Path = typer.Option(MODEL_REPOSITORY, help="Triton model repository to install into."),
    quick: bool = typer.Option(False, help="A few training steps: for tests, not for serving."),
    force: bool = typer.Option(False, help="Rebuild even when the cache holds this recipe."),
    events: Path | None = typer.Option(None, hidden=True, help="Append one JSON line per build event here "
                                       "(`duet up --build` follows it)."),
) -> None:
    """Train, export, verify and install the models (cached by recipe hash), quickest first; the repository is
    signed after each model, so each can be served as soon as it is installed."""
    from models.build import build_model
    from models.gates import QualityGateError

    from .artifacts import sign_local_build
    from .local.background_build import BuildEvents

    wanted = [registry.by_build_name(choice.value) for choice in only] or list(registry.MODELS.values())
    specs = sorted(dict.fromkeys(wanted), key=lambda spec: spec.first_build_minutes)
    report = BuildEvents(events)
    with progress_bar() as progress:
        for spec in specs:
            name = spec.triton_model
            started = time.monotonic()
            try:
                card = build_model(name, out, cache_dir(), progress, quick=quick, force=force, say=console.print,
                                   builder=spec.builder,
                                   evaluate=registry.load(spec.evaluator) if spec.evaluator else None,
                                   on_long_work=lambda spec=spec: report.emit(spec.name, "building"))
            except QualityGateError as error:
                console.print(f"[red]{error}[/] (not installed)")
                report.emit(spec.name, "failed", str(error))
                raise typer.Exit(1) from None
            sign_local_build(out, console.print)
            report.emit(spec.name, "installed")
            metrics = card.get("metrics", {})
            shown = ", ".join(f"{k}={v:.3f}" for k, v in metrics.items() if isinstance(v, float))
            console.print(f"[green]{name}[/] ready in {time.monotonic() - started:.0f}s  {shown}")


artifact_commands.register(models_app)



@models_app.command("check")
def models_check(
    path: Path = typer.Argument(..., help="A model folder (<repository>/<triton model>) or a whole repository."),
    model: str | None = typer.Option(None, help="Public model the folder serves (default: from the folder name)."),
    write_config: bool = typer.Option(False, help="Write config.pbtxt from the ONNX first (a ready-made ONNX)."),
) -> None:
    """Check a model folder against the tensor contract: side files, graph, config, and a run at its shapes."""
    from rich.markup import escape

    from .model_check import check_folder, folders_under
    from .model_check import write_config as write_model_config

    folders = list(folders_under(path))
    if not folders:
        console.print(f"[red]{path}: no model folder here (expected <triton model>/1/model.onnx)[/]")
        raise typer.Exit(1)
    failed = False
    for folder in folders:
        try:
            if write_config:
                console.print(f"wrote {write_model_config(folder, model)}")
            report = check_folder(folder, model)
        except (KeyError, ValueError) as error:
            console.print(f"[red]{folder}: {escape(str(error.args[0] if error.args else error))}[/]")
            failed = True
            continue
        for problem in report.problems:
            console.print(f"[red]FAIL[/] {folder.name} {escape(str(problem))}")
        verdict = "[green]meets the contract[/]" if report.ok else "[red]breaks the contract[/]"
        console.print(f"{folder.name} ({report.model}): {verdict}; checked {', '.join(report.checked)}")
        failed |= not report.ok
    if failed:
        raise typer.Exit(1)

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
    model: list[str] = typer.Option(list(registry.NAMES), "--model", envvar="DUET_MODELS",
                                    help="Public model to serve; repeat to serve several (default: all)."),
    int8: bool = typer.Option(False, envvar="DUET_INT8", help="Serve INT8 variants where built (CPU speed)."),
    workers: int = typer.Option(1, envvar="DUET_WORKERS", help="Transformer REST worker processes."),
    onnx_threads: int = typer.Option(
        0, envvar="DUET_ONNX_THREADS", min=0,
        help="ONNX Runtime threads per model in the local Triton (0: one per core but one)."),
    tensorrt: bool = typer.Option(False, envvar="DUET_TENSORRT",
                                  help="ONNX Runtime predictor: use TensorRT where onnxruntime-gpu offers it."),
    max_request_bytes: int = typer.Option(
        320 * 1024 * 1024, envvar="DUET_MAX_REQUEST_BYTES",
        help="Largest request: the REST body (413 beyond) and the gRPC receive/send message limits."),
    bearer_token: str | None = typer.Option(
        None, envvar="DUET_BEARER_TOKEN", show_default=False,
        help="Require 'Authorization: Bearer <token>' on every transformer request but health and /metrics."),
    prometheus: bool = typer.Option(False, help="Also run Prometheus on 127.0.0.1:9090 with duet's rules."),
    prometheus_port: int = typer.Option(9090, envvar="DUET_PROMETHEUS_PORT"),
    artifact_public_key: Path | None = typer.Option(
        None, envvar="DUET_ARTIFACT_PUBLIC_KEY", dir_okay=False,
        help="Verify the model repository's signature with this public key (default: the development key)."),
    verify_artifacts: bool = typer.Option(True, help="Check digests and signature before any predictor starts."),
    gateway: bool = typer.Option(True, "--gateway/--no-gateway", envvar="DUET_GATEWAY",
                                 help="Also run the DICOM gateway (C-STORE/STOW-RS in, SR back; docs/gateway.md)."),
    gateway_ae_title: str = typer.Option("DUET", envvar="DUET_GATEWAY_AE_TITLE", help="The gateway's AE title."),
    gateway_port: int = typer.Option(11112, envvar="DUET_GATEWAY_PORT", help="The gateway's DIMSE port."),
    gateway_http_port: int = typer.Option(8090, envvar="DUET_GATEWAY_HTTP_PORT",
                                          help="The gateway's STOW-RS, status API and metrics port."),
    gateway_destination: list[str] = typer.Option(
        [], "--gateway-destination", help="Where SRs go: AE@host:port (C-STORE) or a DICOMweb URL; repeatable."),
    build: bool = typer.Option(
        False, "--build", help="Build the models first where needed (as `duet models build`, quickest first, log in "
        "the run folder), serving each as soon as it is built: `make up` on a fresh machine."),
    quick_build: bool = typer.Option(False, hidden=True, help="With --build: quick builds (tests only)."),
) -> None:
    """Run the local stack on 127.0.0.1 until Ctrl-C or SIGTERM: Triton + the mammography and sentiment
    transformers, each restarted with backoff if it dies. On a terminal, warnings and errors are shown in colour;
    otherwise every child's log line is passed through as one JSON object per line."""
    from .local.background_build import BackgroundBuild, serve_new_builds, still_building, wait_until_servable
    from .local.gateway import LocalGatewayConfig
    from .local.stack import LocalStack, StackConfig, StackError
    from .local.triton import TritonPorts

    output = UpOutput(console)
    unknown = sorted(set(model) - set(registry.NAMES))
    if unknown:
        raise typer.BadParameter(f"unknown model(s) {unknown}: one of {', '.join(registry.NAMES)}")
    config = StackConfig(
        model_repository=model_repository.resolve(), run_dir=run_dir.resolve(), http_port=http_port,
        grpc_port=grpc_port, triton=TritonPorts(triton_http_port, triton_grpc_port, triton_metrics_port),
        predictor=predictor.value, models=tuple(dict.fromkeys(model)), int8=int8, workers=workers, threads=onnx_threads,
        tensorrt=tensorrt, max_request_bytes=max_request_bytes,
        extra_env={"DUET_BEARER_TOKEN": bearer_token} if bearer_token else {},
        verify_artifacts=verify_artifacts, artifact_public_key=artifact_public_key,
        gateway=LocalGatewayConfig(
            gateway_ae_title, gateway_port, gateway_http_port,
            {"DESTINATIONS": ",".join(gateway_destination)} if gateway_destination else {},
        ) if gateway and "mammography" in model else None,
    )
    stack = LocalStack(config, say=lambda message: output.event("warning", message), log=output.event)
    # The dict fills in as the children start; their files append across runs, so only this run's lines count.
    earlier = {name: config.run_dir / f"{name}.log" for name in ("predictor", "transformer", "gateway", "build")}
    follower = LogFollower(stack.logs, output, {name: p.stat().st_size for name, p in earlier.items() if p.exists()})
    stopping = threading.Event()
    # SIGHUP too: a closed terminal or ssh session must stop the stack in order, not orphan its children
    # (they run in their own sessions, so the hang-up reaches only duet up).
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stopping.set())
    requested = config.models
    job = None
    if build:
        job = BackgroundBuild(config.model_repository, config.run_dir, list(requested), quick=quick_build)
        follower.extra["build"] = job.log
        job.start()
        with output.status("building the models that need it (first run: minutes)..."):
            wait_until_servable(job, stopping, output.event, follower.poll)
        config.models = tuple(name for name in requested if name in job.installed)
        if stopping.is_set() or not config.models:
            job.stop()
            follower.poll()
            raise typer.Exit(0 if stopping.is_set() else 1)
    prom = None
    try:
        with output.status("starting the predictor and the transformers..."):
            stack.start(still_building(job, requested) if job else ())
        if prometheus:
            from .local.prometheus import PrometheusServer

            prom = PrometheusServer(stack, port=prometheus_port)
            prom.start()
        _print_endpoints(stack, prom, output)
        while not stopping.wait(0.25):
            follower.poll()
            if job and serve_new_builds(job, stack, requested, output.event):
                if prom:
                    prom.reload()
                _print_endpoints(stack, prom, output)
        follower.poll()
    except StackError as error:
        follower.poll()
        output.event("error", str(error))
        raise typer.Exit(1) from None
    finally:
        # The transformer drains first (it stops accepting, so readiness fails, then finishes in-flight requests
        # that still need the predictor), then the predictor.
        output.event("info", "stopping: letting in-flight requests finish...")
        if job:
            job.stop()
        if prom:
            prom.stop()
        stack.stop()
        follower.poll()
        output.event("info", "stopped.")


class UpOutput:
    """What `duet up` writes: rich text on a terminal, one JSON object per line anywhere else (a file, a pipe,
    systemd, a container log), so that a log collector can read every line."""

    def __init__(self, rich_console: Console) -> None:
        self.console = rich_console
        self.interactive = rich_console.is_terminal

    def status(self, message: str):
        from contextlib import nullcontext

        return self.console.status(message) if self.interactive else nullcontext()

    def event(self, level: str, message: str, **fields: object) -> None:
        """duet up's own message (rich markup allowed; plain text off a terminal)."""
        if self.interactive:
            colour = {"error": "red", "warning": "yellow"}.get(level)
            self.console.print(f"[{colour}]{message}[/]" if colour else message, soft_wrap=True)
            return
        from rich.text import Text

        entry = {"time": _utc_now(), "level": level, "logger": "duet.up", "message": Text.from_markup(message).plain,
                 **fields}
        self.write_line(json.dumps(entry, ensure_ascii=False).encode())

    def child_line(self, name: str, line: bytes) -> None:
        """One log line of a child: untouched when it is a JSON object, wrapped in one otherwise (Triton's own
        format, a traceback); on a terminal only warnings and errors, prefixed with the child's name, and the
        model build's progress lines (a few a minute)."""
        if self.interactive:
            text = line.decode("utf-8", "replace")
            lowered = text.lower()
            noteworthy = any(word in lowered for word in ('"warning"', '"error"', " error", "warning:", "traceback")) \
                or text[:1] in ("E", "W") and text[1:5].isdigit()
            if noteworthy or name == "build":
                from rich.text import Text

                self.console.print(Text.assemble((name, "dim"), " ", text), soft_wrap=True, highlight=False)
            return
        if line.startswith(b"{"):
            try:
                if isinstance(json.loads(line), dict):
                    self.write_line(line)
                    return
            except ValueError:
                pass
        text = line.decode("utf-8", "replace")
        level = {"E": "error", "W": "warning"}.get(text[:1], "info") if text[1:5].isdigit() else "info"
        entry = {"time": _utc_now(), "level": level, "logger": name, "message": text}
        self.write_line(json.dumps(entry, ensure_ascii=False).encode())

    @staticmethod
    def write_line(line: bytes) -> None:
        sys.stdout.buffer.write(line + b"\n")
        sys.stdout.buffer.flush()


def _utc_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


class LogFollower:
    """Follows the children's log files (which survive restarts: each child appends to its own) line by line."""

    def __init__(self, logs: dict[str, Path], output: UpOutput, offsets: dict[str, int] | None = None) -> None:
        self.logs = logs
        self.output = output
        self.offsets: dict[str, int] = dict(offsets or {})
        self.partial: dict[str, bytes] = {}
        self.extra: dict[str, Path] = {}  # logs of processes that are not the stack's children (the model build)

    def poll(self) -> None:
        for name, path in [*self.logs.items(), *self.extra.items()]:
            if not path.exists():
                continue
            with path.open("rb") as handle:
                handle.seek(self.offsets.setdefault(name, 0))
                chunk = handle.read()
            self.offsets[name] += len(chunk)
            # Only whole lines: a line being written stays until its newline arrives.
            *lines, rest = (self.partial.get(name, b"") + chunk).split(b"\n")
            self.partial[name] = rest
            for line in lines:
                if line.strip():
                    self.output.child_line(name, line.rstrip(b"\r"))


def _print_endpoints(stack, prom, output: UpOutput) -> None:
    if not output.interactive:
        output.event("info", "duet is up", predictor=stack.predictor_kind, models=stack.models,
                     transformer_http=stack.transformer_http, transformer_grpc=stack.transformer_grpc,
                     triton_http=stack.triton_http, triton_grpc=stack.triton_grpc, run_dir=str(stack.config.run_dir),
                     **({"prometheus": prom.url} if prom else {}), **_gateway_endpoints(stack))
        return
    console.print(f"[green]duet is up[/] (predictor: {stack.predictor_kind}, models: {', '.join(stack.models)})")
    console.print(f"  transformers  REST {stack.transformer_http}   gRPC {stack.transformer_grpc}")
    console.print(f"  triton        REST {stack.triton_http}   gRPC {stack.triton_grpc}   "
                  f"metrics {stack.triton_metrics}")
    if prom:
        console.print(f"  prometheus    {prom.url}")
    if endpoints := _gateway_endpoints(stack):
        console.print(f"  gateway       DIMSE {endpoints['gateway_dimse']}   STOW-RS {endpoints['gateway_stow']}")
    console.print(f"  logs          {stack.config.run_dir}")
    if "sentiment" in stack.models:
        console.print("\nTry:\n  curl -s " + stack.transformer_http + "/v2/models/sentiment/infer "
                      "-H 'content-type: application/json' "
                      "-d '{\"inputs\":[{\"name\":\"text\",\"shape\":[1],\"datatype\":\"BYTES\","
                      "\"data\":[\"Markets rally as inflation cools\"]}]}'",
                      soft_wrap=True)
    if "mammography" in stack.models:
        console.print("  duet dicom synth --out /tmp/study && duet infer mammography /tmp/study/*.dcm")
    console.print("\nCtrl-C stops everything.")


def _gateway_endpoints(stack) -> dict[str, str]:
    gateway = stack.config.gateway
    if not stack.runs_gateway:
        return {}
    return {"gateway_dimse": f"{gateway.ae_title}@{stack.config.host}:{gateway.port}",
            "gateway_stow": f"{stack.gateway_http}/studies"}


@app.command("gateway")
def gateway_command() -> None:
    """Run the DICOM gateway on its own (configured by DUET_GATEWAY_* variables; docs/gateway.md)."""
    from gateway.__main__ import main

    main()


@app.command()
def infer(
    model: str = typer.Argument(..., help=f"Public model: {', '.join(registry.NAMES)}."),
    inputs: list[str] = typer.Argument(..., help="Texts (sentiment) or DICOM files of one study (mammography)."),
    url: str = typer.Option("127.0.0.1:8080", envvar="DUET_URL", help="Transformers' REST host:port."),
    report: Path | None = typer.Option(None, help="mammography: ask for a DICOM SR and write it here."),
) -> None:
    """Send one real request to a running stack and print the result as a table."""
    if model not in registry.MODELS:
        raise typer.BadParameter(f"model must be one of {', '.join(registry.NAMES)}")
    registry.load(registry.model(model).show)(url, inputs, console, report)


_mount_optional("dicom_synth", "dicom_app", "dicom")
_mount_optional("cluster", "cluster_app", "cluster")
_mount_optional("bench", "bench_app", "bench")

if __name__ == "__main__":
    app()
