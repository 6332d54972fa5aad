"""The v2 contract over real HTTP and gRPC against the local stack: complete metadata, one version string in
the metadata, every response and the SR, versioned routes, and the documented error shape for the errors KServe's
and the web framework's own handlers answer.

Runs against `local_stack` (conftest.py: the real Triton, then the ONNX Runtime fallback), with the built models.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from io import BytesIO

import grpc
import httpx
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from pydicom import Dataset, dcmread

from duet.synthetic_dicom import synth_study

from .conftest import wanted_models

pytestmark = pytest.mark.integration

ALGORITHM_VERSION = "111003"  # DCM "Algorithm Version", TID 4019


@pytest.fixture
def stub(local_stack) -> Iterator[GRPCInferenceServiceStub]:
    with grpc.insecure_channel(local_stack.transformer_grpc) as channel:
        yield GRPCInferenceServiceStub(channel)


def _text_body(texts: list[str]) -> dict:
    return {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}


def _study_body(report: bool) -> dict:
    blobs = [image.to_bytes() for image in synth_study(11, images=2, rows=1024, columns=832, n_lesions=1)]
    body: dict = {"inputs": [{"name": "dicom", "shape": [len(blobs)], "datatype": "BYTES",
                              "data": [base64.b64encode(blob).decode() for blob in blobs]}]}
    if report:
        body["parameters"] = {"report": "sr"}
    return body


def _algorithm_versions(items: list[Dataset]) -> Iterator[str]:
    for item in items:
        if "ConceptNameCodeSequence" in item and item.ConceptNameCodeSequence[0].CodeValue == ALGORITHM_VERSION:
            yield str(item.TextValue)
        yield from _algorithm_versions(list(item.get("ContentSequence", [])))


@pytest.mark.parametrize("name", wanted_models())
def test_metadata_over_rest_and_grpc_is_complete_and_names_the_served_version(local_stack, stub, name: str) -> None:
    rest = httpx.get(f"{local_stack.transformer_http}/v2/models/{name}", timeout=30).json()
    assert rest["inputs"] and rest["outputs"]
    assert all({"name", "datatype", "shape"} <= set(tensor) for tensor in rest["inputs"] + rest["outputs"])
    version = rest["parameters"]["version"]
    assert rest["versions"] == [version] and len(version) == 12
    assert rest["parameters"]["onnx_sha256"] and rest["parameters"]["labels"]

    over_grpc = stub.ModelMetadata(pb.ModelMetadataRequest(name=name), timeout=30)
    assert list(over_grpc.versions) == [version]
    assert [(t.name, t.datatype, list(t.shape)) for t in over_grpc.outputs] == [
        (t["name"], t["datatype"], t["shape"]) for t in rest["outputs"]]
    assert [(t.name, t.datatype, list(t.shape)) for t in over_grpc.inputs] == [
        (t["name"], t["datatype"], t["shape"]) for t in rest["inputs"]]


def test_sentiment_responses_carry_the_version_and_versioned_routes_serve_it_only(local_stack, stub) -> None:
    if "sentiment" not in wanted_models():
        pytest.skip("sentiment not in DUET_TEST_MODELS")
    base = f"{local_stack.transformer_http}/v2/models/sentiment"
    version = httpx.get(base, timeout=30).json()["versions"][0]
    reply = httpx.post(f"{base}/infer", json=_text_body(["markets rally"]), timeout=60)
    assert reply.status_code == 200 and reply.json()["model_version"] == version
    pinned = httpx.post(f"{base}/versions/{version}/infer", json=_text_body(["markets rally"]), timeout=60)
    assert pinned.status_code == 200 and pinned.json()["outputs"] == reply.json()["outputs"]
    assert httpx.get(f"{base}/versions/{version}/ready", timeout=30).status_code == 200
    other = httpx.post(f"{base}/versions/1/infer", json=_text_body(["markets rally"]), timeout=60)
    assert other.status_code == 404 and set(other.json()) == {"error"}

    request = pb.ModelInferRequest(model_name="sentiment", inputs=[pb.ModelInferRequest.InferInputTensor(
        name="text", datatype="BYTES", shape=[1], contents=pb.InferTensorContents(bytes_contents=[b"markets"]))])
    assert stub.ModelInfer(request, timeout=60).model_version == version
    request.model_version = version
    assert stub.ModelInfer(request, timeout=60).model_version == version
    request.model_version = "1"
    for call in (lambda: stub.ModelInfer(request, timeout=60),
                 lambda: stub.ModelReady(pb.ModelReadyRequest(name="sentiment", version="1"), timeout=30),
                 lambda: stub.ModelMetadata(pb.ModelMetadataRequest(name="sentiment", version="1"), timeout=30)):
        with pytest.raises(grpc.RpcError) as refused:
            call()
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        assert "no version '1'" in refused.value.details()


def test_the_mammography_response_and_its_sr_name_the_same_version(local_stack) -> None:
    if "mammography" not in wanted_models():
        pytest.skip("mammography not in DUET_TEST_MODELS")
    base = f"{local_stack.transformer_http}/v2/models/mammography"
    version = httpx.get(base, timeout=30).json()["versions"][0]
    reply = httpx.post(f"{base}/versions/{version}/infer", json=_study_body(report=True), timeout=300)
    assert reply.status_code == 200, reply.text
    assert reply.json()["model_version"] == version
    report = next(output for output in reply.json()["outputs"] if output["name"] == "report")
    sr = dcmread(BytesIO(base64.b64decode(report["data"][0])))
    versions = set(_algorithm_versions(list(sr.ContentSequence)))
    assert versions == {version}


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("GET", "/v2/models/nope", None, 404),
    ("POST", "/v2/models/nope/infer", b'{"inputs": []}', 404),
    ("GET", "/v2/nowhere", None, 404),
    ("GET", "/v2/models/{model}/infer", None, 405),
    ("POST", "/v2/models/{model}/infer", b'{"inputs": [', 400),
    ("POST", "/v2/models/{model}/infer", b"plain text", 400),
])
def test_errors_of_kserve_and_the_framework_have_the_documented_shape(
        local_stack, method: str, path: str, body: bytes | None, status: int) -> None:
    url = local_stack.transformer_http + path.format(model=wanted_models()[0])
    headers = {"content-type": "application/json" if body and body.startswith(b"{") else "text/plain"}
    reply = httpx.request(method, url, content=body, headers=headers, timeout=30)
    assert reply.status_code == status
    assert set(reply.json()) == {"error"} and reply.json()["error"]


def test_an_unknown_model_over_grpc_is_not_found(stub) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelMetadata(pb.ModelMetadataRequest(name="nope"), timeout=30)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
