"""Property-based tests of request parsing and the v2 codecs: whatever a client sends, the answer is a value or a
4xx error naming the problem, never an unexpected exception (which the server would turn into a 500).

Requests go through the same steps as on the server: pydantic validation of a JSON body (FastAPI's
RequestValidationError, answered 400 by `server.validation_error_handler`), KServe's InferRequest
construction, duet's binary-extension parser, then the codecs the models call.
"""

from __future__ import annotations

import json

import pytest
from fastapi.exceptions import RequestValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kserve import InferRequest
from kserve.errors import InvalidInput
from kserve.protocol.rest.v2_datamodels import InferenceRequest
from pydantic import ValidationError

from transformers_pre.binary_request import check_binary_header, parse_binary_request
from transformers_pre.codecs import decode_blobs, decode_texts, request_parameters
from transformers_pre.errors import DuetError
from transformers_pre.rest_errors import describe_validation_error

DATATYPES = ["BYTES", "FP32", "INT64", "INT32", "UINT8", "BOOL", "FP16", "FP64", "STRING", "", "bytes"]
json_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
                | st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
elements = st.one_of(json_scalars, st.lists(json_scalars, max_size=3),
                     st.dictionaries(st.text(max_size=4), json_scalars, max_size=2))
shapes = st.one_of(st.lists(st.integers(-3, 8), max_size=3), json_values)
inputs = st.fixed_dictionaries(
    {"name": st.sampled_from(["text", "dicom", "x", ""]) | json_values},
    optional={
        "shape": shapes,
        "datatype": st.sampled_from(DATATYPES) | json_values,
        "data": st.lists(elements, max_size=6) | json_values,
        "parameters": st.dictionaries(st.sampled_from(["binary_data_size", "content_type", "x"]), json_values,
                                      max_size=2)
        | json_values,
    },
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"inputs": st.lists(inputs, max_size=3)},
                          optional={"id": json_values, "parameters": json_values,
                                    "outputs": st.lists(st.fixed_dictionaries({"name": json_values}), max_size=2)}),
)

CLIENT_ERRORS = (DuetError, InvalidInput)


def _decode_like_the_server(request: InferRequest) -> None:
    """What both models do first with a request: the codecs for their BYTES input and the request parameters."""
    request_parameters(request)
    for decode, name in ((decode_texts, "text"), (decode_blobs, "dicom")):
        try:
            decode(request, name)
        except DuetError as error:
            assert int(error.status) < 500, error


def _json_request(body: object) -> InferRequest | None:
    """The REST JSON path; None where FastAPI would have answered 400 already (RequestValidationError)."""
    try:
        validated = InferenceRequest.model_validate(body)
    except ValidationError as error:
        message = describe_validation_error(RequestValidationError(error.errors()))
        assert message.startswith("the body is not a v2 inference request")
        return None
    try:
        return InferRequest.from_inference_request(validated, "m")
    except CLIENT_ERRORS:
        return None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
def test_any_json_body_is_answered_or_refused_as_a_client_error(body: object) -> None:
    request = _json_request(body)
    if request is not None:
        try:
            _decode_like_the_server(request)
        except InvalidInput:
            pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=bodies, payload=st.binary(max_size=64), declared_length=st.integers(-4, 400))
def test_any_binary_extension_request_is_answered_or_refused_as_a_client_error(
    header: object, payload: bytes, declared_length: int
) -> None:
    header_bytes = json.dumps(header).encode()
    body = header_bytes + payload
    length = declared_length if declared_length != 0 else len(header_bytes)
    if not 0 <= length <= len(body):
        return  # refused by the server before parsing: the header length is checked against the body
    try:
        check_binary_header(body[:length])
        request = parse_binary_request(body, length, "m")
    except CLIENT_ERRORS:
        return
    try:
        _decode_like_the_server(request)
    except InvalidInput:
        pass


@pytest.mark.parametrize(
    ("element", "named"),
    [(7, "a number"), (1.5, "a number"), (None, "null"), (True, "a boolean"), ({"a": 1}, "an object"),
     ([1], "a list")],
)
@pytest.mark.parametrize("decode", [decode_texts, decode_blobs])
def test_a_bytes_element_that_is_not_a_string_is_a_400_naming_it(element: object, named: str, decode) -> None:
    body = {"inputs": [{"name": "in", "shape": [2], "datatype": "BYTES", "data": ["ok", element]}]}
    request = _json_request(body)
    assert request is not None
    with pytest.raises(DuetError, match=f"input 'in' element 1 is {named}") as caught:
        decode(request, "in")
    assert int(caught.value.status) == 400

