"""The predictor client's failure handling against a real, closed 127.0.0.1 port (nothing listening)."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from transformers_pre.errors import PredictorUnavailable
from transformers_pre.metrics import PREDICTOR_RETRIES
from transformers_pre.predictor import PredictorClient
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
