"""Start, supervise and stop the local stack: predictor (Triton or the ONNX Runtime fallback) + transformers.

The same code path serves `duet up` and the integration-test fixtures. Everything it writes goes under the run
folder (logs, the local model repository); nothing goes to the home directory.

Supervision, as a pod's containers are on Kubernetes: a child that dies is restarted with exponential backoff
(`restart_backoff_s` doubling to `max_restart_backoff_s`, back to the start after `stable_after_s` up) and each
event is logged. Children restart independently: a crashed predictor never restarts the transformer, which
answers 503 + Retry-After meanwhile. Each child leads its own process group (session), and the supervisor kills
the whole group when the leader dies or is stopped, so no helper process (a Triton Python-backend stub, a decode
worker) outlives it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Self

import httpx

from transformers_pre import registry

from ..paths import MODEL_REPOSITORY, ROOT, RUN_DIR
from . import gateway, repository, triton

PredictorKind = Literal["auto", "triton", "onnxruntime"]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports that are free on `host` now (for stacks started beside another one)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class StackError(RuntimeError):
    """The stack could not start; the message says which part and where its log is."""


@dataclass
class StackConfig:
    """Ports, paths and choices of one local stack (every field is a `duet up` flag)."""

    model_repository: Path = MODEL_REPOSITORY
    run_dir: Path = RUN_DIR
    host: str = "127.0.0.1"
    http_port: int = 8080
    grpc_port: int = 8081
    triton: triton.TritonPorts = field(default_factory=triton.TritonPorts)
    predictor: PredictorKind = "auto"
    models: tuple[str, ...] = registry.NAMES
    int8: bool = False
    threads: int = 0
    workers: int = 1
    tensorrt: bool = False  # ONNX Runtime fallback only: TensorRT provider where onnxruntime-gpu has it
    ready_timeout_s: float = 180.0
    extra_env: dict[str, str] = field(default_factory=dict)
    # One limit for a request: the transformer's REST body (413 beyond) and its gRPC receive/send messages.
    max_request_bytes: int = 320 * 1024 * 1024
    supervise: bool = True
    restart_backoff_s: float = 0.5
    max_restart_backoff_s: float = 30.0
    stable_after_s: float = 60.0
    stop_grace_s: float = 25.0
    # Digests and signature of the model repository, checked before any predictor starts (duet/artifacts.py).
    verify_artifacts: bool = True
    artifact_public_key: Path | None = None  # None: this user's development key
    gateway: gateway.LocalGatewayConfig | None = None  # the DICOM gateway (duet up starts it; --no-gateway)


@dataclass(frozen=True)
class SupervisorEvent:
    """One thing the supervisor saw or did (also logged): `kind` is exited, restarting, ready or failed."""

    time: float
    process: str
    kind: str
    message: str


@dataclass
class _Child:
    """What the supervisor knows of one child: how to start it, when it may restart, whether it is held."""

    command: list[str]
    env: dict[str, str]
    ready_urls: list[str]
    backoff_s: float
    started_at: float = 0.0
    restart_at: float | None = None  # set while waiting out the backoff before the next start
    awaiting_ready: bool = False
    held: bool = False  # stopped on purpose (stop_predictor): not restarted until started again
    restarts: int = 0


def _die_with_parent_prefix() -> list[str]:
    """A command prefix asking Linux to SIGTERM the child when the thread that started it dies (util-linux
    `setpriv --pdeathsig`; the setting survives its exec), so that `duet up` killed outright still stops Triton and
    the transformer in order. Empty where there is no setpriv (then only a stop or a crash of a child is covered)."""
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


DIE_WITH_PARENT = _die_with_parent_prefix()


def kill_process_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    """Send `sig` to every process of the group `pgid` (a child started in its own session), if any is left."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def process_group_members(pgid: int) -> list[int]:
    """PIDs of the live (not zombie) processes whose process group is `pgid` (Linux /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # Fields after the command name (which may hold spaces) start at the last ')'.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


class LocalStack:
    """The running processes of one local stack. Use as a context manager or call start()/stop().

    Start it from a thread that lives as long as the stack (the main thread, as `duet up` and the tests do):
    on Linux its children are signalled to stop when that thread ends.
    """

    def __init__(self, config: StackConfig, say: Callable[[str], None] = print,
                 log: Callable[[str, str], None] | None = None) -> None:
        """`say` prints progress for a person (rich markup allowed); `log(level, message)` records supervisor
        events (default: `say`)."""
        self.config = config
        self.say = say
        self.log = log or (lambda level, message: say(message))
        self.predictor_kind: str = ""
        self.models: list[str] = []
        self.building: tuple[str, ...] = ()  # named to the transformer, answered 503 until built
        self.processes: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.events: list[SupervisorEvent] = []
        self._children: dict[str, _Child] = {}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._predictor_command: list[str] = []
        self._predictor_env: dict[str, str] = {}

    # --- endpoints ---------------------------------------------------------------------------------
    @property
    def transformer_http(self) -> str:
        return f"http://{self.config.host}:{self.config.http_port}"

    @property
    def transformer_grpc(self) -> str:
        return f"{self.config.host}:{self.config.grpc_port}"

    @property
    def triton_http(self) -> str:
        return f"http://{self.config.host}:{self.config.triton.http}"

    @property
    def triton_grpc(self) -> str:
        return f"{self.config.host}:{self.config.triton.grpc}"

    @property
    def triton_metrics(self) -> str:
        return f"http://{self.config.host}:{self.config.triton.metrics}/metrics"

    @property
    def model_repository(self) -> Path:
        return self.config.model_repository

    @property
    def transformer_log(self) -> Path:
        return self.logs["transformer"]

    # --- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self, building: tuple[str, ...] = ()) -> None:
        """Serve every model of `config.models` that is built; `building`: models a build is still making, which
        the transformer answers with a 503 saying so until a `restart` serves them."""
        config = self.config
        config.run_dir.mkdir(parents=True, exist_ok=True)
        self._children.clear()
        self.building = tuple(name for name in building if name not in config.models)
        wanted = [registry.model(name).triton_model for name in config.models]
        served = repository.built_models(config.model_repository, wanted, config.int8)
        served_names = {model.name for model in served}
        self.models = [name for name in config.models if registry.model(name).triton_model in served_names]
        for name in self.building:
            self.say(f"{name}: still building; answered 503 until it is built and served")
        for name in config.models:
            if name not in self.models:
                self.say(f"[yellow]{name}: no built model in {config.model_repository} "
                         "(run `duet models build`); not served[/]")
        if not self.models:
            raise StackError("no model is built: run `duet models build` (or `make models`) first")
        self._check_artifacts()
        self._stopping.clear()
        try:
            self._prepare_predictor(served)
            self.start_predictor()
            self._start_transformer()
            self._wait_ready()
            self._start_gateway()
        except BaseException:
            self.stop()
            raise
        if config.supervise:
            self._supervisor = threading.Thread(target=self._supervise, name="duet-supervisor", daemon=True)
            self._supervisor.start()

    def restart(self, building: tuple[str, ...] = ()) -> None:
        """Stop everything in order and start again, serving what is built now (a model whose build finished).
        Meanwhile the transformer's port is closed: a few seconds of refused connections."""
        self.stop()
        self.start(building)

    def _check_artifacts(self) -> None:
        from .. import artifacts

        if not self.config.verify_artifacts:
            self.say(f"[bold red]NOT verifying the model repository {self.config.model_repository}: digests and "
                     "signature unchecked (--no-verify-artifacts)[/]")
            return
        try:
            artifacts.verify_for_serving(self.config.model_repository, self.config.artifact_public_key,
                                         lambda message: self.log("info", message))
        except artifacts.ArtifactError as error:
            raise StackError(f"model repository refused, no predictor started: {error} (if you changed these "
                             "files yourself: `duet models sign` re-signs a local build)") from None

    def _prepare_predictor(self, served: list[repository.ServedModel]) -> None:
        config = self.config
        kind = config.predictor
        if kind in ("auto", "triton"):
            try:
                local_repo = repository.write_local_repository(
                    config.model_repository, config.run_dir / "model_repository", served, config.threads
                )
                self._predictor_command = triton.command(local_repo, config.run_dir, config.triton, config.host)
                self._predictor_env = triton.environment()
                self.predictor_kind = "triton"
                return
            except triton.TritonUnavailable as reason:
                if kind == "triton":
                    raise StackError(f"Triton cannot run here: {reason}") from None
                self.say(f"[yellow]Triton cannot run here ({reason}); "
                         "serving with the ONNX Runtime predictor instead[/]")
        models_file = config.run_dir / "ort_models.json"
        models_file.write_text(json.dumps([
            {"name": m.name, "onnx": str(m.onnx), "max_batch_size": m.max_batch_size,
             "max_queue_delay_us": m.max_queue_delay_us} for m in served
        ]))
        self._predictor_command = [
            sys.executable, "-m", "duet.local.ort_predictor", f"--models-file={models_file}",
            f"--http_port={config.triton.http}", f"--grpc_port={config.triton.grpc}", f"--bind_address={config.host}",
            f"--grpc_max_receive_message_length={config.max_request_bytes}",
            f"--grpc_max_send_message_length={config.max_request_bytes}",
            *(["--tensorrt"] if config.tensorrt else []),
        ]
        self._predictor_env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.predictor_kind = "onnxruntime"

    def start_predictor(self) -> None:
        """(Re)start the predictor process; waits until it reports ready. It is supervised again from then."""
        with self._lock:
            self._spawn("predictor", self._predictor_command, self._predictor_env,
                        [f"{self.triton_http}/v2/health/ready"])
        self._wait_http(f"{self.triton_http}/v2/health/ready", "predictor")

    def stop_predictor(self) -> None:
        """Stop the predictor on purpose: the supervisor leaves it down until `start_predictor`."""
        with self._lock:
            if "predictor" in self._children:
                self._children["predictor"].held = True
            self._terminate("predictor")

    def _start_transformer(self) -> None:
        config = self.config
        command = [
            sys.executable, "-m", "transformers_pre",
            *[f"--model={name}" for name in self.models],
            # A model still building is answered with a 503 that says so, not "does not exist".
            *[f"--building={name}" for name in self.building],
            f"--predictor_host={self.triton_grpc}", "--predictor_protocol=grpc-v2",
            f"--http_port={config.http_port}", f"--grpc_port={config.grpc_port}", f"--workers={config.workers}",
            f"--bind_address={config.host}",
            f"--grpc_max_receive_message_length={config.max_request_bytes}",
            f"--grpc_max_send_message_length={config.max_request_bytes}",
        ]
        env = {
            **os.environ, "PYTHONPATH": str(ROOT), "DUET_MODEL_REPOSITORY": str(config.model_repository),
            # One metrics folder per stack, so several REST workers report one sum.
            "PROMETHEUS_MULTIPROC_DIR": str(config.run_dir / "prometheus-multiproc"),
            "DUET_MAX_REQUEST_BYTES": str(config.max_request_bytes),
            **config.extra_env,
        }
        ready = [f"{self.transformer_http}/v2/models/{model}/ready" for model in self.models]
        with self._lock:
            self._spawn("transformer", command, env, ready)

    @property
    def gateway_http(self) -> str:
        return f"http://{self.config.host}:{self.config.gateway.http_port}" if self.config.gateway else ""

    @property
    def runs_gateway(self) -> bool:
        """Whether this stack runs the DICOM gateway: configured, and mammography (which it sends to) is served."""
        return self.config.gateway is not None and "mammography" in self.models

    def _start_gateway(self) -> None:
        if not self.runs_gateway:
            return
        env = {**os.environ, "PYTHONPATH": str(ROOT),
               **gateway.environment(self.config.gateway, self.config.host, self.transformer_http, self.config.run_dir)}
        with self._lock:
            self._spawn("gateway", gateway.command(), env, [f"{self.gateway_http}/readyz"])
        self._wait_http(f"{self.gateway_http}/readyz", "gateway")

    def _spawn(self, name: str, command: list[str], env: dict[str, str], ready_urls: list[str]) -> None:
        log = self.config.run_dir / f"{name}.log"
        self.logs[name] = log
        handle = log.open("ab")
        # The death signal follows the starting thread: restarts come from the supervisor thread, which
        # therefore outlives its children (stop() terminates them before it joins the thread).
        self.processes[name] = subprocess.Popen(
            [*DIE_WITH_PARENT, *command], stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
            start_new_session=True,
        )
        handle.close()
        child = self._children.get(name)
        if child is None:
            child = self._children[name] = _Child(command, env, ready_urls, self.config.restart_backoff_s)
        child.started_at = time.monotonic()
        child.restart_at = None
        child.held = False

    def _wait_http(self, url: str, name: str) -> None:
        deadline = time.monotonic() + self.config.ready_timeout_s
        while time.monotonic() < deadline:
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                code = process.returncode if process is not None else "?"
                raise StackError(f"{name} exited with code {code}; see {self.logs[name]}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise StackError(f"{name} not ready after {self.config.ready_timeout_s:.0f}s; see {self.logs[name]}")

    def _wait_ready(self) -> None:
        for model in self.models:
            self._wait_http(f"{self.transformer_http}/v2/models/{model}/ready", "transformer")

    def _terminate(self, name: str, grace_s: float | None = None) -> None:
        """Stop one child and everything in its process group.

        SIGTERM goes to the leader only: KServe and Triton then finish in-flight requests, which still need
        their helpers (decode workers, Python-backend stubs); whatever of the group is left after the leader
        exits (or after the grace period) is killed.
        """
        process = self.processes.pop(name, None)
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.config.stop_grace_s if grace_s is None else grace_s)
            except subprocess.TimeoutExpired:
                kill_process_group(process.pid)
                process.wait()
        kill_process_group(process.pid)

    def stop(self) -> None:
        """Stop supervising, stop the transformer first (its in-flight requests still reach the predictor), then
        the predictor; the supervisor thread ends last, since children it restarted die with it."""
        self._stopping.set()
        with self._lock:  # the supervisor checks `_stopping` under this lock: it restarts nothing from here on
            for name in ("gateway", "transformer", "predictor"):
                self._terminate(name)
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join()
        self._supervisor = None

    def exited(self) -> str | None:
        """The name of a process that is down and not (yet) restarted, if any."""
        with self._lock:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    return name
            return None

    # --- supervision -------------------------------------------------------------------------------
    def _event(self, name: str, kind: str, message: str, level: str = "warning") -> None:
        self.events.append(SupervisorEvent(time.time(), name, kind, message))
        self.log(level, f"{name} {message}")

    def _supervise(self, interval_s: float = 0.2) -> None:
        while not self._stopping.wait(interval_s):
            for name in ("predictor", "transformer", "gateway"):
                with self._lock:
                    if self._stopping.is_set():
                        return
                    self._check(name)

    def _check(self, name: str) -> None:
        """One supervision step for one child: notice an exit, restart after the backoff, report readiness."""
        child = self._children.get(name)
        if child is None or child.held:
            return
        now = time.monotonic()
        process = self.processes.get(name)
        if process is not None and process.poll() is not None:
            # The leader died: nothing of its tree may survive it (a Triton stub would hold memory and ports).
            kill_process_group(process.pid)
            del self.processes[name]
            up_s = now - child.started_at
            if up_s >= self.config.stable_after_s:
                child.backoff_s = self.config.restart_backoff_s
            child.restart_at = now + child.backoff_s
            child.awaiting_ready = False
            self._event(name, "exited", f"exited with code {process.returncode} after {up_s:.1f}s up; restarting "
                        f"in {child.backoff_s:.1f}s (see {self.logs[name]})", "error")
            child.backoff_s = min(child.backoff_s * 2, self.config.max_restart_backoff_s)
            return
        if process is None and child.restart_at is not None and now >= child.restart_at:
            child.restarts += 1
            self._spawn(name, child.command, child.env, child.ready_urls)
            child.awaiting_ready = True
            self._event(name, "restarting", f"restarted (restart {child.restarts}, pid {self.processes[name].pid})")
            return
        if child.awaiting_ready and process is not None and self._all_ready(child.ready_urls):
            child.awaiting_ready = False
            self._event(name, "ready", f"ready again after restart {child.restarts}", "info")

    @staticmethod
    def _all_ready(urls: list[str]) -> bool:
        try:
            return all(httpx.get(url, timeout=1).status_code == 200 for url in urls)
        except httpx.HTTPError:
            return False
