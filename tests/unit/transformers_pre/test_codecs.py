"""v2 tensor codecs: BYTES as text or blobs, from JSON or binary, and responses that mirror the request."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from kserve import InferInput, InferRequest, InferResponse
from kserve.protocol.infer_type import RequestedOutput

from transformers_pre.codecs import (
    bytes_tensor,
    decode_blobs,
    decode_texts,
    make_response,
    request_parameters,
)
from transformers_pre.errors import BadRequest

DICOM_LIKE = b"\x00" * 128 + b"DICM" + bytes(range(256))


def _binary_request(name: str, values: list[bytes], **kwargs) -> InferRequest:
    tensor = InferInput(name, [len(values)], "BYTES")
    tensor.set_data_from_numpy(bytes_tensor(values), binary_data=True)
    return InferRequest("m", [tensor], **kwargs)


def _json_request(name: str, values: list[str], datatype: str = "BYTES") -> InferRequest:
    return InferRequest("m", [InferInput(name, [len(values)], datatype, data=values)])


def test_binary_blobs_come_back_byte_for_byte() -> None:
    assert decode_blobs(_binary_request("dicom", [DICOM_LIKE, b"x"]), "dicom") == [DICOM_LIKE, b"x"]


def test_json_blobs_are_base64_decoded() -> None:
    request = _json_request("dicom", [base64.b64encode(DICOM_LIKE).decode()])
    assert decode_blobs(request, "dicom") == [DICOM_LIKE]


def test_json_blob_that_is_not_base64_is_400() -> None:
    with pytest.raises(BadRequest, match="element 0 is a JSON string but not valid base64"):
        decode_blobs(_json_request("dicom", ["not base64 !"]), "dicom")


def test_texts_from_binary_and_json_agree() -> None:
    texts = ["héllo", "", "🚀"]
    assert decode_texts(_binary_request("text", [t.encode() for t in texts]), "text") == texts
    assert decode_texts(_json_request("text", texts), "text") == texts


def test_invalid_utf8_names_the_element_and_byte() -> None:
    with pytest.raises(BadRequest, match=r"element 1 is not valid UTF-8 \(byte 2\)"):
        decode_texts(_binary_request("text", [b"ok", b"ab\xff"]), "text")


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (_json_request("words", ["x"]), "input 'text' is required \\(got 'words'\\)"),
        (_json_request("text", ["1"], datatype="INT64"), "must have datatype BYTES"),
        (InferRequest("m", [InferInput("text", [1, 1], "BYTES", data=["x"])]), "must have shape \\[n\\]"),
    ],
)
def test_wrong_inputs_are_400(request_: InferRequest, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        decode_texts(request_, "text")


def test_blob_output_is_raw_for_binary_clients_and_base64_in_json() -> None:
    sr = b"\x00\xffDICM-SR"
    json_client = _json_request("text", ["x"])
    body, _ = make_response(json_client, "m", {"risk": np.ones(1, np.float32)}, blobs={"report": sr}).to_rest()
    report = {o["name"]: o for o in body["outputs"]}["report"]
    assert report["parameters"] == {"content_encoding": "base64"}
    assert base64.b64decode(report["data"][0]) == sr

    binary_client = _json_request("text", ["x"])
    binary_client.request_outputs = [RequestedOutput("report", {"binary_data": True})]
    raw, json_length = make_response(binary_client, "m", {}, blobs={"report": sr}).to_rest()
    assert raw[json_length:] == len(sr).to_bytes(4, "little") + sr


@pytest.mark.parametrize("binary", [True, False])
def test_empty_outputs_encode_for_binary_and_json_clients(binary: bool) -> None:
    # A study without findings: boxes [0, 4], scores [0] beside a non-empty risk.
    client = _json_request("text", ["x"])
    client.request_outputs = [RequestedOutput(name, {"binary_data": binary}) for name in ("boxes", "scores", "risk")]
    outputs = {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0, np.float32),
               "risk": np.full(1, 0.25, np.float32)}
    encoded, json_length = make_response(client, "m", outputs).to_rest()
    if binary:
        header = json.loads(bytes(encoded[:json_length]))
        sizes = {o["name"]: o["parameters"]["binary_data_size"] for o in header["outputs"]}
        assert sizes == {"boxes": 0, "scores": 0, "risk": 4}
        assert encoded[json_length:] == np.full(1, 0.25, np.float32).tobytes()
    else:
        assert {o["name"]: o["data"] for o in encoded["outputs"]} == {"boxes": [], "scores": [], "risk": [0.25]}


def test_empty_outputs_keep_their_place_among_raw_grpc_outputs() -> None:
    tensor = InferInput("dicom", [1], "BYTES")
    tensor.set_data_from_numpy(bytes_tensor([DICOM_LIKE]), binary_data=True)
    grpc_request = InferRequest.from_grpc(InferRequest("m", [tensor]).to_grpc())
    assert grpc_request.from_grpc and grpc_request.use_binary_outputs
    outputs = {"boxes": np.zeros((0, 4), np.float32), "risk": np.full(1, 0.25, np.float32)}
    sent = make_response(grpc_request, "m", outputs, blobs={"report": b"SR"}).to_grpc()
    assert len(sent.raw_output_contents) == len(sent.outputs) == 3
    received = InferResponse.from_grpc(sent)
    decoded = {output.name: output.as_numpy() for output in received.outputs}
    assert decoded["boxes"].shape == (0, 4)
    assert decoded["risk"].tolist() == [0.25]
    assert decoded["report"].tolist() == [b"SR"]


def test_request_parameters_are_plain_values() -> None:
    request = _json_request("text", ["x"])
    request.parameters = {"report": "sr"}
    assert request_parameters(request) == {"report": "sr"}
