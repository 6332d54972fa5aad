"""Model readiness with KServe's --enable_predictor_health_check, as the chart runs the transformer on a cluster.

Real processes: the local stack's Triton serving the built models, and beside it a transformer started the way
the chart starts it (`python -m transformers_pre ... --enable_predictor_health_check`), once speaking gRPC to
Triton (the chart's runtime) and once v2 REST (KServe's own kserve-tritonserver runtime). The public model
`mammography` is served by Triton as `mammo_detector`; KServe's own check asked Triton about `mammography`
and so answered "not ready" forever.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from duet.local.stack import LocalStack, free_ports

from .conftest import require_built, start_stack, wanted_models

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# DUET_TEST_MODELS narrows the stack while developing one model, as for the session stack.
MODELS = wanted_models()


def status(url: str) -> int:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return 0


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    local = start_stack(tmp_path_factory.mktemp("health-check-stack"), "triton", require_built(MODELS))
    try:
        yield local
    finally:
        local.stop()


class Transformer:
    """One transformer process with KServe's predictor health check on, pointed at the stack's Triton."""

    def __init__(self, stack: LocalStack, protocol: str, run_dir: Path) -> None:
        http, grpc = free_ports(2)
        self.url = f"http://127.0.0.1:{http}"
        predictor = stack.triton_grpc if protocol == "grpc-v2" else stack.triton_http
        command = [
            sys.executable, "-m", "transformers_pre", *[f"--model={model}" for model in MODELS],
            f"--predictor_host={predictor.removeprefix('http://')}", f"--predictor_protocol={protocol}",
            f"--http_port={http}", f"--grpc_port={grpc}", "--bind_address=127.0.0.1",
            "--enable_predictor_health_check",
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "DUET_MODEL_REPOSITORY": str(stack.model_repository),
               "PROMETHEUS_MULTIPROC_DIR": str(run_dir / "prom"), "DUET_LOG_FORMAT": "text"}
        self.log = run_dir / f"transformer-{protocol}.log"
        with self.log.open("wb") as handle:
            self.process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                            start_new_session=True)
        try:
            wait_for(lambda: self.process.poll() is None and status(f"{self.url}/v2/health/live") == 200, 120,
                     f"the {protocol} transformer to start")
        except AssertionError:
            self.stop()
            raise AssertionError(self.log.read_text()[-3000:]) from None

    def ready(self, model: str) -> int:
        return status(f"{self.url}/v2/models/{model}/ready")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture(params=["grpc-v2", "v2"])
def transformer(request: pytest.FixtureRequest, stack: LocalStack, tmp_path: Path) -> Iterator[Transformer]:
    started = Transformer(stack, request.param, tmp_path)
    try:
        yield started
    finally:
        started.stop()


def test_triton_knows_the_models_by_their_own_names_only(stack):
    """Why KServe's unmodified check fails: Triton has no model called `mammography`."""
    assert status(f"{stack.triton_http}/v2/models/mammo_detector/ready") == 200
    assert status(f"{stack.triton_http}/v2/models/mammography/ready") != 200


def test_public_models_are_ready_with_the_predictor_health_check_on(transformer):
    for model in MODELS:
        wait_for(lambda model=model: transformer.ready(model) == 200, 30, f"{model} to be ready")
    assert status(f"{transformer.url}/v2/health/ready") == 200
    assert transformer.ready("no_such_model") == 404


def test_readiness_follows_the_predictor_model_down_and_up(stack, transformer):
    assert status(f"{transformer.url}/v2/health/ready") == 200
    model = MODELS[0]
    wait_for(lambda: transformer.ready(model) == 200, 30, f"{model} to be ready")
    stack.stop_predictor()
    try:
        wait_for(lambda: transformer.ready(model) == 503, 30, f"{model} to report not ready")
        assert all(transformer.ready(other) == 503 for other in MODELS)
        assert status(f"{transformer.url}/v2/health/ready") == 503
        assert status(f"{transformer.url}/v2/health/live") == 200, "the transformer itself stays alive"
    finally:
        stack.start_predictor()
    wait_for(lambda: transformer.ready(model) == 200, 60, f"{model} to be ready again")
