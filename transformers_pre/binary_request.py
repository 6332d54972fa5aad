"""The v2 REST binary tensor extension, parsed without copying the tensors: a JSON header, then each input's
bytes.

KServe 0.21's `InferRequest.from_bytes` re-encodes every binary BYTES element as a UTF-8 string, which fails
on (and echoes) arbitrary binary data such as a DICOM file. Here the raw bytes are kept, and the codecs decide
per input whether they are text or blobs.
"""

from __future__ import annotations

import orjson
from fastapi.exceptions import RequestValidationError
from kserve import InferInput, InferRequest
from kserve.protocol.infer_type import RequestedOutput
from kserve.protocol.rest.v2_datamodels import InferenceRequest
from pydantic import ValidationError

from .body import RECEIVED_BODY
from .errors import BadRequest
from .kserve_compat import set_raw_input_bytes
from .rest_errors import describe_validation_error

INFERENCE_HEADER = "inference-header-content-length"


def decode_binary_request(body: bytes, headers: dict, model_name: str) -> InferRequest:
    """The InferRequest of a binary-extension REST body. A large body was received whole by the middleware
    (`body.py`), which gave the route only its JSON header: its tensors are read from that buffer."""
    json_length = headers.get(INFERENCE_HEADER)
    if json_length is None or not json_length.isdigit() or int(json_length) > len(body):
        raise BadRequest(f"binary request needs a valid '{INFERENCE_HEADER}' header")
    check_binary_header(body[: int(json_length)])
    whole = RECEIVED_BODY.get()
    return parse_binary_request(body if whole is None else whole, int(json_length), model_name)


def check_binary_header(header_bytes: bytes) -> None:
    """The JSON header of a binary-extension request obeys the same v2 schema as a JSON body (KServe's
    InferenceRequest model), except that inputs sent as binary have no `data`; BadRequest (400) otherwise."""
    try:
        header = orjson.loads(header_bytes)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"unreadable v2 request header: {error}") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise BadRequest("the v2 request header must be a JSON object with a list of 'inputs'")
    inputs = [{"data": [], **declared} if isinstance(declared, dict) else declared
              for declared in header["inputs"]]
    try:
        InferenceRequest.model_validate({**header, "inputs": inputs})
    except ValidationError as error:
        raise BadRequest(describe_validation_error(RequestValidationError(error.errors()))) from None


def parse_binary_request(body: bytes | memoryview, json_length: int, model_name: str) -> InferRequest:
    """A v2 REST request with the binary tensor extension: JSON header, then each input's raw bytes (each
    input's raw bytes a view of `body`, never a copy)."""
    try:
        header = orjson.loads(body[:json_length])
        declared_inputs = header["inputs"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as error:
        raise BadRequest(f"unreadable v2 request header: {error}") from None
    offset = json_length
    inputs: list[InferInput] = []
    for declared in declared_inputs:
        try:
            infer_input = InferInput(
                name=declared["name"],
                shape=declared["shape"],
                datatype=declared["datatype"],
                parameters=declared.get("parameters"),
            )
        except (KeyError, TypeError) as error:
            raise BadRequest(f"input is missing a field: {error}") from None
        if declared.get("data") is not None:
            infer_input.data = declared["data"]
        else:
            size = (declared.get("parameters") or {}).get("binary_data_size")
            if not isinstance(size, int) or size < 0 or offset + size > len(body):
                raise BadRequest(f"input {infer_input.name!r} has a missing or wrong 'binary_data_size'")
            # A view, not a copy: a 4-view study is ~100 MB (the BYTES codec reads its elements in place too).
            set_raw_input_bytes(infer_input, memoryview(body)[offset : offset + size])
            offset += size
        inputs.append(infer_input)
    outputs = [
        RequestedOutput(name=output["name"], parameters=output.get("parameters"))
        for output in header.get("outputs") or []
    ]
    return InferRequest(
        model_name=model_name,
        request_id=header.get("id"),
        parameters=header.get("parameters"),
        infer_inputs=inputs,
        request_outputs=outputs or None,
    )
