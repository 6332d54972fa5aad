"""A team's own detector served end to end from a directory, with no build package.

The model is built outside the project's build code (`tests/support/foreign_detector.py`: onnx.helper, FP16
input of 3 x 96 x 80, K = 7, its own labels), handed over as a bare folder, given its config.pbtxt and checked
by the real `duet models check --write-config`, then served by the same code path as
`duet up --model-repository DIR` after `duet models sign`: real transformer and predictor processes, a real
synthetic DICOM study over v2 REST.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from foreign_detector import LABELS, SCORES, write_model_folder

from duet.local.stack import LocalStack, StackConfig, free_ports
from duet.local.triton import TritonPorts
from duet.synthetic_dicom import synth_study
from duet.v2 import model_request

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["triton", "onnxruntime"])
def foreign_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    repository = tmp_path_factory.mktemp("team-repository")
    folder = write_model_folder(repository / "mammo_detector")
    check = subprocess.run(
        [str(Path(sys.executable).parent / "duet"), "models", "check", str(folder), "--write-config"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    # `duet up` serves only a repository whose files match a signed manifest: the team signs what it hands over
    # (here with the development key, as `duet models build` does).
    sign = subprocess.run([str(Path(sys.executable).parent / "duet"), "models", "sign", "--repository",
                           str(repository)], capture_output=True, text=True, check=False, timeout=300)
    assert sign.returncode == 0, sign.stdout + sign.stderr
    http, grpc, t_http, t_grpc, t_metrics = free_ports(5)
    config = StackConfig(
        model_repository=repository,
        run_dir=tmp_path_factory.mktemp("foreign-run"),
        http_port=http,
        grpc_port=grpc,
        triton=TritonPorts(t_http, t_grpc, t_metrics),
        predictor=request.param,
        models=("mammography",),
    )
    with LocalStack(config, say=lambda message: None) as stack:
        yield stack


def outputs_of(reply: httpx.Response) -> dict[str, dict]:
    assert reply.status_code == 200, reply.text
    return {output["name"]: output for output in reply.json()["outputs"]}


def test_the_foreign_detector_answers_with_its_own_labels_and_k(foreign_stack: LocalStack) -> None:
    study = synth_study(7, images=2, rows=960, columns=800, n_lesions=0, degraded=False)
    body, headers = model_request("mammography", [image.to_bytes() for image in study])
    reply = httpx.post(
        f"{foreign_stack.transformer_http}/v2/models/mammography/infer",
        content=body,
        headers=headers,
        timeout=120,
    )
    outputs = outputs_of(reply)
    # The graph's fixed table: scores 0.92, 0.81, 0.55 pass the model's own threshold of 0.5; the third box
    # overlaps the first (IoU > 0.5) and NMS drops it, so two findings per image survive.
    kept = int((SCORES >= 0.5).sum()) - 1
    assert outputs["scores"]["shape"] == [2 * kept]
    assert set(outputs["labels"]["data"]) == set(LABELS)
    assert outputs["image_index"]["data"] == [0] * kept + [1] * kept
    # Boxes come back in stored pixels: the model-input box scaled by the stored/model-input ratio.
    boxes = np.array(outputs["boxes"]["data"], dtype=np.float32).reshape(-1, 4)
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert boxes.max() <= max(960, 800)
    assert all(0.0 <= q <= 1.0 for q in outputs["quality"]["data"])


def test_a_blank_image_is_gated_out_by_the_foreign_quality_head(foreign_stack: LocalStack) -> None:
    image, blank = synth_study(8, images=2, rows=960, columns=800, n_lesions=0, degraded=False)
    # A VOI window far above every stored value: the windowed image is black, as a failed exposure reads.
    blank.dataset.WindowCenter, blank.dataset.WindowWidth = "60000", "10"
    body, headers = model_request("mammography", [image.to_bytes(), blank.to_bytes()])
    reply = httpx.post(
        f"{foreign_stack.transformer_http}/v2/models/mammography/infer",
        content=body,
        headers=headers,
        timeout=120,
    )
    outputs = outputs_of(reply)
    assert outputs["quality"]["data"][1] < 0.5 <= outputs["quality"]["data"][0]
    assert set(outputs["image_index"]["data"]) == {0}
