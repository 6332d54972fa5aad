"""Request bodies built by tritonclient (duet.v2): what each public model's clients send."""

from __future__ import annotations

import json

from tritonclient.utils import deserialize_bytes_tensor

from duet.v2 import model_request
from transformers_pre.registry import MODELS


def test_texts_as_v2_json_ask_for_the_public_outputs_as_json() -> None:
    texts = ["Markets rally", "Ünïcode 🚀", ""]
    body, headers = model_request("sentiment", texts, binary=False)
    assert headers == {"Content-Type": "application/json"}
    request = json.loads(body)
    (tensor,) = request["inputs"]
    assert (tensor["name"], tensor["datatype"], tensor["shape"], tensor["data"]) == ("text", "BYTES", [3], texts)
    assert [output["name"] for output in request["outputs"]] == list(MODELS["sentiment"].outputs)
    assert all(output["parameters"] == {"binary_data": False} for output in request["outputs"])


def test_files_travel_in_the_binary_extension_with_request_parameters() -> None:
    files = [b"DICM\x00\xff\xfe" * 10, b"\x00" * 3, b""]
    body, headers = model_request("mammography", files, parameters={"report": "sr"})
    assert headers["Content-Type"] == "application/octet-stream"
    header_length = int(headers["Inference-Header-Content-Length"])
    request = json.loads(body[:header_length])
    (tensor,) = request["inputs"]
    assert (tensor["name"], tensor["datatype"], tensor["shape"]) == ("dicom", "BYTES", [3])
    assert "data" not in tensor
    assert header_length + tensor["parameters"]["binary_data_size"] == len(body)
    assert list(deserialize_bytes_tensor(body[header_length:])) == files
    assert request["parameters"] == {"report": "sr"}
    assert [output["name"] for output in request["outputs"]] == list(MODELS["mammography"].outputs)
