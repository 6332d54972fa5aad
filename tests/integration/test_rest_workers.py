"""The transformer with several REST worker processes (`--workers 2`): each worker builds duet's app
(`server.create_app`, from the pickled REST server, `kserve_compat.multiprocess_rest_server`), so every answer
takes duet's error path and middleware, whichever worker serves it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psutil
import pytest

from duet.local.prometheus import metric_totals
from duet.local.stack import LocalStack, StackConfig, free_ports
from duet.local.triton import TritonPorts

from .conftest import model_repository, require_built

pytestmark = pytest.mark.integration

WORKERS = 2


@pytest.fixture(scope="module")
def two_worker_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    require_built(("sentiment",))
    http, grpc, t_http, t_grpc, t_metrics = free_ports(5)
    config = StackConfig(model_repository=model_repository(), run_dir=tmp_path_factory.mktemp("workers"),
                         http_port=http, grpc_port=grpc, triton=TritonPorts(t_http, t_grpc, t_metrics),
                         predictor="onnxruntime", models=("sentiment",), workers=WORKERS)
    with LocalStack(config, say=lambda message: None) as stack:
        yield stack


def _headline(text: str) -> dict:
    return {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [text]}]}


def test_the_transformer_runs_the_asked_number_of_rest_workers(two_worker_stack: LocalStack) -> None:
    transformer = psutil.Process(two_worker_stack.processes["transformer"].pid)
    python_children = [child for child in transformer.children() if "python" in child.name().lower()]
    assert len(python_children) >= WORKERS


def test_every_worker_answers_with_duets_app(two_worker_stack: LocalStack) -> None:
    url = f"{two_worker_stack.transformer_http}/v2/models/sentiment/infer"
    # Fresh connections, so the kernel spreads them over the workers' shared socket.
    for index in range(12):
        with httpx.Client(timeout=60) as client:
            answer = client.post(url, json=_headline(f"Markets steady {index}"),
                                 headers={"x-request-id": f"r{index}"})
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-request-id"] == f"r{index}"  # duet's middleware
            assert answer.headers["content-type"] == "application/json"
            refused = client.post(url, json={"inputs": "all"})
            assert refused.status_code == 400  # duet's validation handler, not FastAPI's 422
            assert refused.json()["error"].startswith("the body is not a v2 inference request: ")
    # /metrics sums every worker (prometheus_client's multiprocess mode): all 12 answers are counted.
    metrics = httpx.get(f"{two_worker_stack.transformer_http}/metrics", timeout=30).text
    totals = metric_totals(metrics, ("duet_requests",), model="sentiment", code_class="2xx")
    assert totals["duet_requests"] >= 12
