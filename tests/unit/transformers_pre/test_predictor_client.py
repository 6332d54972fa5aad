"""The predictor client's failure handling against a real, closed 127.0.0.1 port (nothing listening)."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from transformers_pre.errors import PredictorUnavailable
from transformers_pre.metrics import PREDICTOR_RETRIES
from transformers_pre.predictor_client import PredictorClient
from transformers_pre.settings import PredictorSettings


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("protocol", ["grpc-v2", "v2"])
async def test_unreachable_predictor_is_503_after_bounded_retries(protocol: str) -> None:
    settings = PredictorSettings(timeout_seconds=2, retries=2, retry_backoff_seconds=0.01)
    client = PredictorClient(f"127.0.0.1:{_closed_port()}", protocol, settings)
    before = PREDICTOR_RETRIES.labels("sentiment")._value.get()
    try:
        with pytest.raises(PredictorUnavailable, match="unavailable after 3 attempts"):
            await client.infer("sentiment", {"input_ids": np.zeros((1, 4), np.int64)}, ["logits"])
    finally:
        await client.close()
    assert PREDICTOR_RETRIES.labels("sentiment")._value.get() - before == 2


def test_grpc_messages_carry_raw_tensors_and_read_back_as_arrays() -> None:
    from kserve.protocol.grpc.grpc_predict_v2_pb2 import ModelInferResponse

    from transformers_pre.errors import PredictorError
    from transformers_pre.predictor_client import model_infer_outputs, model_infer_request

    ids = np.arange(6, dtype=np.int64).reshape(2, 3)
    request = model_infer_request("sentiment", {"input_ids": ids, "attention_mask": np.ones((2, 3), np.int64)},
                                  ["logits"])
    assert [(t.name, t.datatype, list(t.shape)) for t in request.inputs] == [
        ("input_ids", "INT64", [2, 3]), ("attention_mask", "INT64", [2, 3])]
    assert np.array_equal(np.frombuffer(request.raw_input_contents[0], np.int64).reshape(2, 3), ids)
    assert [t.name for t in request.outputs] == ["logits"]

    logits = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]], np.float32)
    reply = ModelInferResponse(model_name="sentiment")
    reply.outputs.add(name="logits", datatype="FP32", shape=[2, 3])
    reply.raw_output_contents.append(logits.tobytes())
    assert np.array_equal(model_infer_outputs(reply, "sentiment", ["logits"])["logits"], logits)
    with pytest.raises(PredictorError, match="no output"):
        model_infer_outputs(reply, "sentiment", ["probabilities"])
    del reply.raw_output_contents[:]
    with pytest.raises(PredictorError, match="raw output contents"):
        model_infer_outputs(reply, "sentiment", ["logits"])
