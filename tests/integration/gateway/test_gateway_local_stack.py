"""`duet up`'s path: the local stack starts the gateway beside the transformers, pointed at them."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from pydicom import dcmread

from duet.local.gateway import LocalGatewayConfig
from duet.local.stack import LocalStack, StackConfig, free_ports
from duet.local.triton import TritonPorts

from ..conftest import model_repository, require_built
from .conftest import storescu

pytestmark = pytest.mark.integration


def test_the_local_stack_runs_the_gateway_end_to_end(tmp_path: Path, destination, study_files):
    http, grpc, t_http, t_grpc, t_metrics, dimse, gateway_http = free_ports(7)
    config = StackConfig(
        model_repository=model_repository(),
        run_dir=tmp_path / "run",
        http_port=http,
        grpc_port=grpc,
        triton=TritonPorts(t_http, t_grpc, t_metrics),
        predictor="onnxruntime",
        models=require_built(("mammography",)),
        gateway=LocalGatewayConfig("DUET", dimse, gateway_http, {"DESTINATIONS": destination.destination}),
    )
    with LocalStack(config, say=lambda message: None) as stack:
        assert stack.gateway_http == f"http://127.0.0.1:{gateway_http}"
        assert storescu(dimse, study_files, calling_ae="ANY_MODALITY").returncode == 0
        (sr_file,) = destination.wait_for(1)
        assert dcmread(sr_file).Modality == "SR"
        deadline = time.monotonic() + 30
        while not httpx.get(
            f"{stack.gateway_http}/api/studies", params={"state": "exported"}, timeout=5
        ).json()["studies"]:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert (tmp_path / "run" / "gateway" / "spool" / "spool.sqlite3").exists()
    assert stack.processes == {}
