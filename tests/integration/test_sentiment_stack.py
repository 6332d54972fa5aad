"""The sentiment model end to end: real clients -> transformer -> predictor (Triton or ONNX Runtime)."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton_http
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig
from tokenizers import Tokenizer

from duet.local.prometheus import metric_totals
from transformers_pre import registry

pytestmark = pytest.mark.integration

HEADLINES = [
    "Stocks rally as inflation cools faster than expected",
    "Factory closes, leaving hundreds without work",
    "City council meets on Tuesday to discuss the budget",
    "",
    "Ünïcode headline with émojis 🚀 and accents",
]


def _texts_tensor(texts: list[str]) -> triton_http.InferInput:
    tensor = triton_http.InferInput("text", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=object), binary_data=True)
    return tensor


def _reference_probabilities(stack, texts: list[str]) -> np.ndarray:
    """Tokenise and run the same ONNX file directly with ONNX Runtime, then softmax."""
    folder = stack.model_repository / "sentiment"
    max_length = json.loads((folder / "preprocess.json").read_text())["max_length"]
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding()
    encodings = tokenizer.encode_batch(texts)
    session = ort.InferenceSession(str(folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
    })
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def test_binary_tritonclient_matches_onnxruntime_directly(local_stack) -> None:
    client = triton_http.InferenceServerClient(local_stack.transformer_http.removeprefix("http://"))
    outputs = [triton_http.InferRequestedOutput(n, binary_data=True) for n in ("probabilities", "label", "entropy")]
    result = client.infer("sentiment", [_texts_tensor(HEADLINES)], outputs=outputs)
    assert result.get_response()["model_name"] == "sentiment"
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (len(HEADLINES), 3) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, _reference_probabilities(local_stack, HEADLINES), atol=1e-5)
    labels = [label.decode() for label in result.as_numpy("label")]
    assert labels == [["negative", "neutral", "positive"][i] for i in probabilities.argmax(axis=1)]
    expected_entropy = -(probabilities * np.log(probabilities)).sum(axis=1)
    np.testing.assert_allclose(result.as_numpy("entropy"), expected_entropy, atol=1e-5)


def test_plain_json_request(local_stack) -> None:
    body = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": HEADLINES[:2]}]}
    reply = httpx.post(f"{local_stack.transformer_http}/v2/models/sentiment/infer", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert body["model_name"] == "sentiment" and body["parameters"]["max_length"] > 0
    outputs = {output["name"]: output for output in body["outputs"]}
    assert outputs["probabilities"]["shape"] == [2, 3] and outputs["probabilities"]["datatype"] == "FP32"
    assert np.allclose(np.array(outputs["probabilities"]["data"]).reshape(2, 3).sum(axis=1), 1.0, atol=1e-5)
    assert set(outputs["label"]["data"]) <= {"negative", "neutral", "positive"}


def test_kserve_rest_client(local_stack) -> None:
    async def call() -> np.ndarray:
        text = InferInput("text", [1], "BYTES")
        text.set_data_from_numpy(np.array([HEADLINES[0].encode()], dtype=object), binary_data=False)
        async with InferenceRESTClient(RESTConfig(protocol="v2", timeout=30)) as client:
            response = await client.infer(local_stack.transformer_http, InferRequest("sentiment", [text]),
                                          model_name="sentiment")
        return {o.name: o for o in response.outputs}["probabilities"].as_numpy()

    probabilities = asyncio.run(call())
    np.testing.assert_allclose(probabilities.reshape(1, 3), _reference_probabilities(local_stack, HEADLINES[:1]),
                               atol=1e-5)


def test_grpc_v2_to_the_transformer(local_stack) -> None:
    async def call() -> dict:
        text = InferInput("text", [3], "BYTES")
        text.set_data_from_numpy(np.array([t.encode() for t in HEADLINES[:3]], dtype=object), binary_data=True)
        async with InferenceGRPCClient(local_stack.transformer_grpc, timeout=30) as client:
            response = await client.infer(InferRequest("sentiment", [text]))
        return {o.name: o.as_numpy() for o in response.outputs}

    outputs = asyncio.run(call())
    np.testing.assert_allclose(outputs["probabilities"].reshape(3, 3),
                               _reference_probabilities(local_stack, HEADLINES[:3]), atol=1e-5)
    assert outputs["entropy"].shape == (3,)


def test_health_readiness_and_metadata(local_stack) -> None:
    base = local_stack.transformer_http
    assert httpx.get(f"{base}/v2/health/live").status_code == 200
    assert httpx.get(f"{base}/v2/health/ready").status_code == 200
    assert httpx.get(f"{base}/v2/models/sentiment/ready").status_code == 200
    metadata = httpx.get(f"{base}/v2/models/sentiment").json()
    assert metadata["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert [o["name"] for o in metadata["outputs"]] == ["probabilities", "label", "entropy"]
    assert httpx.get(f"{base}/v2/models/nonexistent/ready").status_code == 404


def test_batch_of_64_texts(local_stack) -> None:
    texts = [f"Headline number {i}: {'good' if i % 2 else 'bad'} news for markets" for i in range(64)]
    client = triton_http.InferenceServerClient(local_stack.transformer_http.removeprefix("http://"))
    result = client.infer("sentiment", [_texts_tensor(texts)])
    np.testing.assert_allclose(result.as_numpy("probabilities"), _reference_probabilities(local_stack, texts),
                               atol=1e-5)


def test_long_text_is_truncated_and_reported(local_stack) -> None:
    long_text = "markets " * 500
    client = triton_http.InferenceServerClient(local_stack.transformer_http.removeprefix("http://"))
    result = client.infer("sentiment", [_texts_tensor(["short", long_text])])
    assert result.get_response()["parameters"]["truncated"] == "1"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"inputs": [{"name": "text", "shape": [0], "datatype": "BYTES", "data": []}]}, "empty"),
        ({"inputs": [{"name": "words", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}, "'text' is required"),
        ({"inputs": [{"name": "text", "shape": [1], "datatype": "INT64", "data": [1]}]}, "datatype BYTES"),
        ({"inputs": [{"name": "text", "shape": [300], "datatype": "BYTES", "data": ["x"] * 300}]}, "limit is 256"),
    ],
)
def test_bad_requests_are_400_with_a_message(local_stack, body: dict, message: str) -> None:
    reply = httpx.post(f"{local_stack.transformer_http}/v2/models/sentiment/infer", json=body, timeout=30)
    assert reply.status_code == 400
    assert message in reply.json()["error"]


def test_invalid_utf8_is_400_naming_the_element(local_stack) -> None:
    header = json.dumps({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": 12}}]}).encode()
    payload = b"\x02\x00\x00\x00ok" + b"\x02\x00\x00\x00\xff\xfe"
    reply = httpx.post(f"{local_stack.transformer_http}/v2/models/sentiment/infer", content=header + payload,
                       headers={"Inference-Header-Content-Length": str(len(header)),
                                "Content-Type": "application/octet-stream"}, timeout=30)
    assert reply.status_code == 400, reply.text
    assert "element 1 is not valid UTF-8" in reply.json()["error"]


def test_triton_really_batched_concurrent_requests(local_stack) -> None:
    if local_stack.predictor_kind != "triton":
        pytest.skip("nv_inference_* metrics are Triton's")
    before = httpx.get(local_stack.triton_metrics).text
    client_url = local_stack.transformer_http + "/v2/models/sentiment/infer"

    def one(i: int) -> int:
        body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [f"headline {i}"]}]}
        return httpx.post(client_url, json=body, timeout=60).status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(one, range(96)))
    assert statuses == [200] * 96
    after = httpx.get(local_stack.triton_metrics).text
    counters = ("nv_inference_count", "nv_inference_exec_count")
    triton_model = registry.model("sentiment").triton_model
    before_totals = metric_totals(before, counters, model=triton_model)
    after_totals = metric_totals(after, counters, model=triton_model)
    inferences, executions = (after_totals[name] - before_totals[name] for name in counters)
    assert inferences == 96
    assert executions < inferences, f"no batching: {executions} executions for {inferences} inferences"


def test_predictor_stopped_is_503_then_recovers_without_restarting_the_transformer(local_stack) -> None:
    url = f"{local_stack.transformer_http}/v2/models/sentiment/infer"
    body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["Markets steady"]}]}
    transformer_pid = local_stack.processes["transformer"].pid
    local_stack.stop_predictor()
    try:
        reply = httpx.post(url, json=body, timeout=60)
        assert reply.status_code == 503
        assert "unavailable" in reply.json()["error"]
    finally:
        local_stack.start_predictor()
    deadline = time.monotonic() + 30
    while (reply := httpx.post(url, json=body, timeout=60)).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert reply.status_code == 200
    assert local_stack.processes["transformer"].pid == transformer_pid
