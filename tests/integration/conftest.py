"""The local stack started by the same code path as `duet up`, on free 127.0.0.1 ports, once per predictor kind.

Needs the built models (`make models`); set DUET_MODEL_REPOSITORY to use another repository.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from duet.local.stack import LocalStack, StackConfig, free_ports
from duet.local.triton import TritonPorts
from duet.paths import MODEL_REPOSITORY
from transformers_pre import registry


def model_repository() -> Path:
    return Path(os.environ.get("DUET_MODEL_REPOSITORY", MODEL_REPOSITORY))


def wanted_models() -> tuple[str, ...]:
    """The public models the integration stacks serve: every registered one, or DUET_TEST_MODELS (comma-separated)
    to narrow the stack while developing one model."""
    return tuple(os.environ.get("DUET_TEST_MODELS", ",".join(registry.NAMES)).split(","))


def require_built(models: tuple[str, ...]) -> tuple[str, ...]:
    """`models`, failing the test when one of them has no built model in the repository."""
    missing = [name for name in models if not (model_repository() / registry.model(name).triton_model / "1").exists()]
    if missing:
        pytest.fail(f"models not built in {model_repository()}: {missing}; run `make models`")
    return models


def start_stack(tmp_path: Path, predictor: str, models: tuple[str, ...] = registry.NAMES,
                extra_env: dict[str, str] | None = None) -> LocalStack:
    http, grpc, t_http, t_grpc, t_metrics = free_ports(5)
    config = StackConfig(
        model_repository=model_repository(), run_dir=tmp_path, http_port=http, grpc_port=grpc,
        triton=TritonPorts(t_http, t_grpc, t_metrics), predictor=predictor, models=models,
        extra_env=extra_env or {},
    )
    stack = LocalStack(config, say=lambda message: None)
    stack.start()
    return stack


@pytest.fixture(scope="session", params=["triton", "onnxruntime"])
def local_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Both public models behind the real Triton, then behind the ONNX Runtime fallback predictor."""
    # DUET_TEST_MODELS narrows the stack while developing one model; CI serves every registered one.
    stack = start_stack(tmp_path_factory.mktemp(f"stack-{request.param}"), request.param,
                        require_built(wanted_models()))
    try:
        yield stack
    finally:
        stack.stop()
