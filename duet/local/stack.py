"""Start, watch and stop the local stack: predictor (Triton or the ONNX Runtime fallback) + transformers.

The same code path serves `duet up` and the integration-test fixtures. Everything it writes goes under the run
folder (logs, the local model repository); nothing goes to the home directory.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx

from ..paths import MODEL_REPOSITORY, PREDICTOR_MODELS, ROOT, RUN_DIR
from . import repository, triton

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
    models: tuple[str, ...] = ("mammography", "sentiment")
    int8: bool = False
    threads: int = 0
    workers: int = 1
    tensorrt: bool = False  # ONNX Runtime fallback only: TensorRT provider where onnxruntime-gpu has it
    ready_timeout_s: float = 180.0
    extra_env: dict[str, str] = field(default_factory=dict)


class LocalStack:
    """The running processes of one local stack. Use as a context manager or call start()/stop()."""

    def __init__(self, config: StackConfig, say=print) -> None:
        self.config = config
        self.say = say
        self.predictor_kind: str = ""
        self.models: list[str] = []
        self.processes: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
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
    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        config = self.config
        config.run_dir.mkdir(parents=True, exist_ok=True)
        wanted = [PREDICTOR_MODELS[name] for name in config.models]
        served = repository.built_models(config.model_repository, wanted, config.int8)
        served_names = {model.name for model in served}
        self.models = [name for name in config.models if PREDICTOR_MODELS[name] in served_names]
        for name in config.models:
            if name not in self.models:
                self.say(f"[yellow]{name}: no built model in {config.model_repository} (run `duet models build`); not served[/]")
        if not self.models:
            raise StackError("no model is built: run `duet models build` (or `make models`) first")
        try:
            self._prepare_predictor(served)
            self.start_predictor()
            self._start_transformer()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

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
                self.say(f"[yellow]Triton cannot run here ({reason}); serving with the ONNX Runtime predictor instead[/]")
        models_file = config.run_dir / "ort_models.json"
        models_file.write_text(json.dumps([
            {"name": m.name, "onnx": str(m.onnx), "max_batch_size": m.max_batch_size,
             "max_queue_delay_us": m.max_queue_delay_us} for m in served
        ]))
        self._predictor_command = [
            sys.executable, "-m", "duet.local.ort_predictor", f"--models-file={models_file}",
            f"--http_port={config.triton.http}", f"--grpc_port={config.triton.grpc}",
            *(["--tensorrt"] if config.tensorrt else []),
        ]
        self._predictor_env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.predictor_kind = "onnxruntime"

    def start_predictor(self) -> None:
        """(Re)start the predictor process; waits until it reports ready."""
        self._spawn("predictor", self._predictor_command, self._predictor_env)
        self._wait_http(f"{self.triton_http}/v2/health/ready", "predictor")

    def stop_predictor(self) -> None:
        self._terminate("predictor")

    def _start_transformer(self) -> None:
        config = self.config
        command = [
            sys.executable, "-m", "transformers_pre",
            *[f"--model={name}" for name in self.models],
            f"--predictor_host={self.triton_grpc}", "--predictor_protocol=grpc-v2",
            f"--http_port={config.http_port}", f"--grpc_port={config.grpc_port}", f"--workers={config.workers}",
        ]
        env = {
            **os.environ, "PYTHONPATH": str(ROOT), "DUET_MODEL_REPOSITORY": str(config.model_repository),
            # One metrics folder per stack, so several REST workers report one sum.
            "PROMETHEUS_MULTIPROC_DIR": str(config.run_dir / "prometheus-multiproc"),
            **config.extra_env,
        }
        self._spawn("transformer", command, env)

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        log = self.config.run_dir / f"{name}.log"
        self.logs[name] = log
        handle = log.open("ab")
        self.processes[name] = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
        )
        handle.close()

    def _wait_http(self, url: str, name: str) -> None:
        deadline = time.monotonic() + self.config.ready_timeout_s
        while time.monotonic() < deadline:
            process = self.processes[name]
            if process.poll() is not None:
                raise StackError(f"{name} exited with code {process.returncode}; see {self.logs[name]}")
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

    def _terminate(self, name: str, grace_s: float = 25.0) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        # SIGTERM lets KServe and Triton finish in-flight requests before exiting.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def stop(self) -> None:
        """Stop the transformer first (its in-flight requests still reach the predictor), then the predictor."""
        for name in ("transformer", "predictor"):
            self._terminate(name)

    def exited(self) -> str | None:
        """The name of a process that died on its own, if any."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                return name
        return None
