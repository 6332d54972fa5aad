"""The binary v2 request parser keeps BYTES as bytes, read in place, and refuses what does not add up."""

from __future__ import annotations

import json

import pytest

from transformers_pre.binary_request import parse_binary_request
from transformers_pre.codecs import decode_blobs, decode_texts
from transformers_pre.errors import BadRequest


def _binary_body(elements: list[bytes]) -> tuple[bytes, int]:
    payload = b"".join(len(e).to_bytes(4, "little") + e for e in elements)
    header = json.dumps({
        "id": "r1",
        "parameters": {"report": "sr"},
        "inputs": [{"name": "dicom", "shape": [len(elements)], "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(payload)}}],
        "outputs": [{"name": "report", "parameters": {"binary_data": True}}],
    }).encode()
    return header + payload, len(header)


def test_binary_request_keeps_non_utf8_bytes() -> None:
    blob = bytes(range(256)) * 4
    body, json_length = _binary_body([blob, b"\xff\xfe"])
    request = parse_binary_request(body, json_length, "mammography")
    assert request.id == "r1" and request.parameters == {"report": "sr"}
    assert decode_blobs(request, "dicom") == [blob, b"\xff\xfe"]
    assert request.request_outputs[0].binary_data is True
    with pytest.raises(BadRequest, match="element 0 is not valid UTF-8"):
        decode_texts(request, "dicom")


def test_binary_request_with_a_lying_size_is_rejected() -> None:
    body, json_length = _binary_body([b"abc"])
    with pytest.raises(BadRequest, match="binary_data_size"):
        parse_binary_request(body[:-1], json_length, "m")
    with pytest.raises(BadRequest, match="unreadable v2 request header"):
        parse_binary_request(b"{not json", 9, "m")


def test_binary_elements_are_views_of_the_request_not_copies() -> None:
    first, second = bytes(range(256)) * 64, b"\x00\x01"
    body, json_length = _binary_body([first, second])
    blobs = decode_blobs(parse_binary_request(body, json_length, "mammography"), "dicom")
    assert [bytes(blob) for blob in blobs] == [first, second]
    assert all(isinstance(blob, memoryview) and blob.readonly and blob.obj is body for blob in blobs)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x05\x00", "element 0 has a truncated length prefix"),
        ((9).to_bytes(4, "little") + b"abc", "element 0 declares 9 bytes but 3 remain"),
        ((1).to_bytes(4, "little") + b"a" + (7).to_bytes(4, "little") + b"b", "element 1 declares 7 bytes"),
    ],
)
def test_a_malformed_raw_bytes_tensor_is_400_naming_the_element(payload: bytes, message: str) -> None:
    header = json.dumps({"inputs": [{"name": "dicom", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(payload)}}]}).encode()
    request = parse_binary_request(header + payload, len(header), "mammography")
    with pytest.raises(BadRequest, match=message):
        decode_blobs(request, "dicom")
