"""Hostile v2 request bodies against both public models of the real stack: a 4xx with a v2 error, never a 5xx.

Hand-picked cases from issue 11 (BYTES elements that are numbers, null or lists; bodies that are not v2; hostile
texts), then property-based ones: arbitrary JSON bodies and arbitrary binary-extension requests.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transformers_pre import registry

from .conftest import wanted_models

pytestmark = pytest.mark.integration

# Each public model served by the session's stack (all of them unless DUET_TEST_MODELS narrows it) -> its input.
MODELS = {name: registry.model(name).input for name in wanted_models()}


def _post(stack, model: str, **kwargs) -> httpx.Response:
    return httpx.post(f"{stack.transformer_http}/v2/models/{model}/infer", timeout=120, **kwargs)


def _is_v2_client_error(reply: httpx.Response) -> bool:
    if not 400 <= reply.status_code < 500:
        return False
    try:
        body = reply.json()
    except ValueError:
        return False
    return isinstance(body, dict) and set(body) == {"error"} and isinstance(body["error"], str) and body["error"]


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize(("element", "said"), [(42, "element 0 is a number"), (None, "element 0 is null"),
                                               ([1, 2], "is not a valid BYTES tensor"),
                                               (True, "element 0 is a boolean"),
                                               ({"a": "b"}, "element 0 is an object")])
def test_a_bytes_element_that_is_not_a_string_is_a_400_naming_it(local_stack, model: str, element, said: str) -> None:
    name = MODELS[model]
    body = {"inputs": [{"name": name, "shape": [1], "datatype": "BYTES", "data": [element]}]}
    reply = _post(local_stack, model, json=body)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"].startswith(f"input '{name}' {said}")


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("body", [{"instances": [1, 2]}, {"inputs": [{"name": "x"}]}, [], "text", 3])
def test_a_body_that_is_not_v2_is_a_400_with_the_v2_error_body(local_stack, model: str, body) -> None:
    reply = _post(local_stack, model, json=body)
    assert reply.status_code == 400, reply.text
    assert set(reply.json()) == {"error"}, reply.text
    if isinstance(body, dict):  # a JSON string is taken for a binary-extension body, refused for its header
        assert "not a v2 inference request" in reply.json()["error"]


def test_body_that_is_not_json_is_a_400(local_stack) -> None:
    reply = _post(local_stack, "sentiment", content=b"{not json", headers={"content-type": "application/json"})
    assert _is_v2_client_error(reply), reply.text


def _binary(texts: list[bytes]) -> tuple[bytes, dict[str, str]]:
    payload = b"".join(len(t).to_bytes(4, "little") + t for t in texts)
    header = json.dumps({"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(payload)}}]}).encode()
    return header + payload, {"inference-header-content-length": str(len(header)),
                              "content-type": "application/octet-stream"}


@pytest.mark.parametrize(
    ("texts", "statuses"),
    [
        ([b"\xff\xfe not utf-8"], {400}),
        ([b"\x00\x01\x02 control \x1b[31m characters"], {200}),
        ([("a" * 1024 * 1024).encode()], {200, 400, 413}),  # scored after the per-text byte cap, or refused
        ([b"headline"] * 10_000, {400, 413}),  # over the batch cap
        ([b""], {200}),
    ],
    ids=["invalid-utf8", "control-characters", "1MB-string", "10k-texts", "empty"],
)
def test_hostile_texts(local_stack, texts: list[bytes], statuses: set[int]) -> None:
    body, headers = _binary(texts)
    reply = _post(local_stack, "sentiment", content=body, headers=headers)
    assert reply.status_code in statuses, reply.text[:500]
    if reply.status_code != 200:
        assert _is_v2_client_error(reply), reply.text[:500]


json_scalars = (st.none() | st.booleans() | st.integers(-(2**66), 2**66)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
tensors = st.fixed_dictionaries(
    {"name": st.sampled_from(["text", "dicom", "x"]) | json_values},
    optional={"shape": st.lists(st.integers(-2, 5), max_size=3) | json_values,
              "datatype": st.sampled_from(["BYTES", "FP32", "INT64", "STRING"]) | json_values,
              "data": st.lists(json_scalars | st.lists(json_scalars, max_size=2), max_size=5) | json_values,
              "parameters": st.dictionaries(st.sampled_from(["binary_data_size", "x"]), json_values, max_size=2)},
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"inputs": st.lists(tensors, max_size=2)},
                          optional={"id": json_values, "parameters": st.dictionaries(
                              st.sampled_from(["report", "binary_data_output", "x"]), json_values, max_size=2),
                              "outputs": st.lists(st.fixed_dictionaries({"name": json_values}), max_size=2)}),
)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_arbitrary_json_bodies_never_get_a_5xx(local_stack, model: str) -> None:
    @settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(bodies)
    def check(body) -> None:
        reply = _post(local_stack, model, json=body)
        assert reply.status_code == 200 or _is_v2_client_error(reply), (reply.status_code, reply.text[:300])

    check()


@pytest.mark.parametrize("model", sorted(MODELS))
def test_arbitrary_binary_extension_requests_never_get_a_5xx(local_stack, model: str) -> None:
    @settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(header=bodies, payload=st.binary(max_size=48), declared=st.integers(-3, 300) | st.just(None))
    def check(header, payload: bytes, declared: int | None) -> None:
        header_bytes = json.dumps(header).encode()
        length = len(header_bytes) if declared is None else declared
        reply = _post(local_stack, model, content=header_bytes + payload,
                      headers={"inference-header-content-length": str(length),
                               "content-type": "application/octet-stream"})
        assert reply.status_code == 200 or _is_v2_client_error(reply), (reply.status_code, reply.text[:300])

    check()
