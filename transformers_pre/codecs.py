"""v2 tensors <-> numpy, bytes and str, in one place for every model.

BYTES tensors reach a transformer in two shapes: raw elements (gRPC, or REST with the binary tensor extension),
handed out as read-only memoryviews of the request, or `str` elements (REST JSON). DICOM files sent as JSON are
base64 strings; texts are plain strings.
Responses mirror the request: a blob output (a DICOM SR) goes out raw where the client asked for binary outputs
and base64-encoded in JSON (flagged with the output parameter `content_encoding: base64`).
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from kserve import InferInput, InferOutput, InferRequest, InferResponse
from kserve.protocol.infer_type import to_http_parameters
from kserve.utils.utils import from_np_dtype

from .blob import Blob
from .errors import BadRequest
from .kserve_compat import raw_input_bytes

BASE64 = "base64"


def request_parameters(request: InferRequest) -> dict[str, Any]:
    """The request-level parameters as plain Python values, for REST and gRPC requests alike."""
    return to_http_parameters(request.parameters) if request.parameters else {}


def get_input(request: InferRequest, name: str, datatype: str) -> InferInput:
    """The named input, checked for datatype and a rank-1 shape; a clear 400 otherwise."""
    found = [infer_input for infer_input in request.inputs if infer_input.name == name]
    if not found:
        names = ", ".join(repr(infer_input.name) for infer_input in request.inputs) or "none"
        raise BadRequest(f"input {name!r} is required (got {names})")
    infer_input = found[0]
    if infer_input.datatype != datatype:
        raise BadRequest(f"input {name!r} must have datatype {datatype}, got {infer_input.datatype}")
    if len(infer_input.shape) != 1:
        raise BadRequest(f"input {name!r} must have shape [n], got {list(infer_input.shape)}")
    return infer_input


def split_bytes_tensor(raw: Blob, name: str) -> list[memoryview]:
    """The elements of a raw BYTES tensor (each a 4-byte little-endian length, then that many bytes) as read-only
    views of `raw`. KServe's `deserialize_bytes_tensor` copies every element instead: for a DICOM study, one more
    copy of ~100 MB."""
    view = memoryview(raw).toreadonly().cast("B")
    elements: list[memoryview] = []
    offset = 0
    while offset < len(view):
        if offset + 4 > len(view):
            raise BadRequest(f"input {name!r} is not a valid BYTES tensor: element {len(elements)} has a truncated "
                             "length prefix")
        (length,) = struct.unpack_from("<I", view, offset)
        offset += 4
        if offset + length > len(view):
            raise BadRequest(f"input {name!r} is not a valid BYTES tensor: element {len(elements)} declares "
                             f"{length} bytes but {len(view) - offset} remain")
        elements.append(view[offset : offset + length])
        offset += length
    return elements


def _bytes_elements(infer_input: InferInput) -> list[Blob | str]:
    try:
        raw = raw_input_bytes(infer_input)
        if raw is not None:
            elements: list = split_bytes_tensor(raw, infer_input.name)
        else:
            elements = infer_input.as_numpy().reshape(-1).tolist()
    except (ValueError, TypeError, IndexError) as error:
        raise BadRequest(f"input {infer_input.name!r} is not a valid BYTES tensor: {error}") from None
    if len(elements) != infer_input.shape[0]:
        raise BadRequest(
            f"input {infer_input.name!r} declares shape {list(infer_input.shape)} but holds {len(elements)} elements"
        )
    for index, element in enumerate(elements):
        # JSON bodies can carry numbers, null, booleans or objects where a BYTES element belongs.
        if not isinstance(element, (bytes, memoryview, str)):
            raise BadRequest(
                f"input {infer_input.name!r} element {index} is {_json_type(element)}; a BYTES element must "
                "be a string (or raw bytes with the binary tensor extension)"
            )
    return elements


def _json_type(value: object) -> str:
    """How a JSON client would name the type of a decoded value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"of type {type(value).__name__}"


def decode_texts(request: InferRequest, name: str) -> list[str]:
    """A BYTES [n] input as UTF-8 strings; invalid UTF-8 is a 400 that names the element."""
    texts: list[str] = []
    for index, element in enumerate(_bytes_elements(get_input(request, name, "BYTES"))):
        if not isinstance(element, str):
            try:
                element = str(element, "utf-8")
            except UnicodeDecodeError as error:
                raise BadRequest(
                    f"input {name!r} element {index} is not valid UTF-8 (byte {error.start})"
                ) from None
        texts.append(element)
    return texts


def decode_blobs(request: InferRequest, name: str) -> list[Blob]:
    """A BYTES [n] input of binary files: raw (views of the request, not copies) as sent, or base64 strings from a
    JSON request."""
    blobs: list[Blob] = []
    for index, element in enumerate(_bytes_elements(get_input(request, name, "BYTES"))):
        if isinstance(element, str):
            try:
                element = base64.b64decode(element, validate=True)
            except (binascii.Error, ValueError):
                raise BadRequest(
                    f"input {name!r} element {index} is a JSON string but not valid base64; send files as "
                    "base64 in JSON or as raw bytes with the binary tensor extension"
                ) from None
        blobs.append(element)
    return blobs


def _wants_binary(request: InferRequest, output_name: str) -> bool:
    if request.from_grpc:
        return True
    for requested in request.request_outputs or ():
        if requested.name == output_name and requested.binary_data is not None:
            return bool(requested.binary_data)
    return bool(request.use_binary_outputs)


def bytes_tensor(values: Sequence[bytes | str]) -> np.ndarray:
    """A 1-D object array of bytes, the numpy form of a v2 BYTES tensor."""
    array = np.empty(len(values), dtype=object)
    array[:] = [value.encode("utf-8") if isinstance(value, str) else value for value in values]
    return array


def make_response(
    request: InferRequest,
    model_name: str,
    outputs: Mapping[str, np.ndarray],
    *,
    blobs: Mapping[str, bytes] | None = None,
    parameters: Mapping[str, Any] | None = None,
    model_version: str | None = None,
) -> InferResponse:
    """An InferResponse holding numpy outputs and single-element binary blobs (BYTES [1]).

    Blobs travel raw where the client reads binary outputs (gRPC, or REST with `binary_data`) and as base64
    in JSON otherwise, since JSON strings cannot carry arbitrary bytes.
    """
    infer_outputs: list[InferOutput] = []
    for name, array in outputs.items():
        infer_output = InferOutput(name=name, shape=list(array.shape), datatype=from_np_dtype(array.dtype))
        # An empty output a client reads as binary is encoded as binary here: KServe 0.21 converts only outputs
        # whose data is truthy, so an empty one was left without bytes: over REST a TypeError (500), over gRPC
        # raw contents one short, which clients map onto outputs by position.
        wants_raw = request.use_binary_outputs if request.from_grpc else _wants_binary(request, name)
        empty_binary = array.size == 0 and wants_raw
        infer_output.set_data_from_numpy(array, binary_data=empty_binary)
        infer_outputs.append(infer_output)
    for name, blob in (blobs or {}).items():
        binary = _wants_binary(request, name)
        output_parameters = None if binary else {"content_encoding": BASE64}
        infer_output = InferOutput(name=name, shape=[1], datatype="BYTES", parameters=output_parameters)
        payload = blob if binary else base64.b64encode(blob)
        infer_output.set_data_from_numpy(bytes_tensor([payload]), binary_data=binary)
        infer_outputs.append(infer_output)
    return InferResponse(
        response_id=request.id or "",
        model_name=model_name,
        model_version=model_version,
        infer_outputs=infer_outputs,
        from_grpc=request.from_grpc,
        parameters=dict(parameters) if parameters else None,
        use_binary_outputs=request.use_binary_outputs,
        requested_outputs=request.request_outputs,
    )
