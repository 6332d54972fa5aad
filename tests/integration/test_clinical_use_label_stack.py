"""The served stack labels the shipped synthetic-phantom detector "NOT FOR CLINICAL USE" over REST (JSON and
binary), gRPC, in the SR, and in `duet infer`'s output; the SR it returns passes PixelMed with no error.

Runs against `local_stack` (conftest.py: the real Triton, then the ONNX Runtime fallback), with the built models.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import subprocess
import sys
from io import BytesIO
from pathlib import Path

import httpx
import numpy as np
import pytest
from kserve import InferenceGRPCClient, InferInput, InferRequest
from kserve.protocol.infer_type import to_http_parameters
from pydicom import dcmread

from duet.synthetic_dicom import synth_study

NOTICE_START = "NOT FOR CLINICAL USE: "
PIXELMED_JAR = Path("/usr/share/java/pixelmed.jar")
JAVA_OPTIONS = ["-Djdk.xml.xpathExprOpLimit=0", "-Djdk.xml.xpathExprGrpLimit=0", "-Djdk.xml.xpathTotalOpLimit=0"]


@pytest.fixture(scope="module")
def study_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("label-study")
    paths = []
    for index, image in enumerate(synth_study(57, images=2, rows=1024, columns=832, n_lesions=2)):
        paths.append(folder / f"{index}.dcm")
        paths[-1].write_bytes(image.to_bytes())
    return paths


def _assert_labelled(parameters: dict) -> None:
    assert parameters["cleared_for_clinical_use"] is False
    assert parameters["clinical_use_notice"].startswith(NOTICE_START)
    assert "synthetic phantoms" in parameters["clinical_use_notice"]


def test_rest_and_grpc_responses_and_the_sr_carry_the_label(local_stack, study_files, tmp_path: Path) -> None:
    blobs = [path.read_bytes() for path in study_files]
    body = {"inputs": [{"name": "dicom", "shape": [len(blobs)], "datatype": "BYTES",
                        "data": [base64.b64encode(blob).decode() for blob in blobs]}],
            "parameters": {"report": "sr"}}
    reply = httpx.post(f"{local_stack.transformer_http}/v2/models/mammography/infer", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    _assert_labelled(reply.json()["parameters"])
    report = next(output for output in reply.json()["outputs"] if output["name"] == "report")
    sr_bytes = base64.b64decode(report["data"][0])
    sr = dcmread(BytesIO(sr_bytes))
    assert sr.SeriesDescription.startswith("NOT FOR CLINICAL USE - ")
    comments = [item.TextValue for container in sr.ContentSequence
                if container.ConceptNameCodeSequence[0].CodeValue == "C0034375" for item in container.ContentSequence]
    assert comments == [reply.json()["parameters"]["clinical_use_notice"]]

    async def grpc_parameters() -> dict:
        tensor = InferInput("dicom", [len(blobs)], "BYTES")
        tensor.set_data_from_numpy(np.array(blobs, dtype=object), binary_data=True)
        async with InferenceGRPCClient(local_stack.transformer_grpc, timeout=120) as client:
            response = await client.infer(InferRequest("mammography", [tensor]))
        return to_http_parameters(response.parameters)

    _assert_labelled(asyncio.run(grpc_parameters()))

    if shutil.which("java") and PIXELMED_JAR.exists():
        path = tmp_path / "served.dcm"
        path.write_bytes(sr_bytes)
        result = subprocess.run(
            ["java", *JAVA_OPTIONS, "-cp", str(PIXELMED_JAR), "com.pixelmed.validate.DicomSRValidator", str(path)],
            capture_output=True, text=True, timeout=300, check=False,
        )
        lines = result.stdout.splitlines()
        assert "Root Template Validation Complete" in lines, result.stdout + result.stderr
        single_region = sum(1 for item in sr.ContentSequence if item.ConceptNameCodeSequence[0].CodeValue == "126010"
                            for group in item.ContentSequence for row in group.ContentSequence
                            if row.ValueType == "SCOORD") == 1
        errors = [line for line in lines if line.startswith("Error")]
        # With exactly one finding PixelMed 20220618 checks every group against TID 1410 (docs/api.md).
        assert all("Template 1410" in line for line in errors) if single_region else errors == []


def test_duet_infer_prints_the_label(local_stack, study_files) -> None:
    url = local_stack.transformer_http.removeprefix("http://")
    result = subprocess.run(
        [sys.executable, "-m", "duet.cli", "infer", "mammography", *map(str, study_files), "--url", url],
        capture_output=True, text=True, timeout=300, check=False, env={**os.environ, "COLUMNS": "300"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert NOTICE_START in " ".join(result.stdout.split())
