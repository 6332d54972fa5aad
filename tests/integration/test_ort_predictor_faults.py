"""The ONNX Runtime fallback predictor keeps serving after bad requests, whatever they are batched with.

Malformed tensors sent at the same time as valid ones (so the dynamic batcher may gather them together) each get
a 400 naming the problem; the valid ones get their answer; and later requests are served (the batcher is alive).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from duet.local.stack import LocalStack

from .conftest import start_stack
from .test_supervision import _listening_addresses

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = start_stack(tmp_path_factory.mktemp("ort-faults"), "onnxruntime")
    try:
        yield stack
    finally:
        stack.stop()


def _tensor(name: str, array: np.ndarray, datatype: str | None = None) -> dict:
    datatype = datatype or {np.int64: "INT64", np.float32: "FP32", np.int32: "INT32"}[array.dtype.type]
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": array.reshape(-1).tolist()}


def _sentiment(ids: np.ndarray, mask: np.ndarray) -> dict:
    return {"inputs": [_tensor("input_ids", ids), _tensor("attention_mask", mask)]}


GOOD = _sentiment(np.array([[101, 2000, 3000, 102]], dtype=np.int64), np.ones((1, 4), dtype=np.int64))
BAD = {
    "rank 3": (_sentiment(np.ones((1, 4, 1), dtype=np.int64), np.ones((1, 4, 1), dtype=np.int64)), "must have shape"),
    "scalar": (_sentiment(np.array(7, dtype=np.int64), np.array(1, dtype=np.int64)), "must have shape"),
    "float ids": (_sentiment(np.ones((1, 4), dtype=np.float32), np.ones((1, 4), dtype=np.int64)), "datatype INT64"),
    "int32 ids": (_sentiment(np.ones((1, 4), dtype=np.int32), np.ones((1, 4), dtype=np.int32)), "datatype INT64"),
    "missing mask": ({"inputs": [_tensor("input_ids", np.ones((1, 4), dtype=np.int64))]}, "needs inputs"),
}


async def _post(client: httpx.AsyncClient, url: str, body: dict) -> httpx.Response:
    return await client.post(url, json=body, timeout=30)


def test_bad_tensors_beside_good_ones_never_stall_the_batcher(stack: LocalStack) -> None:
    url = f"{stack.triton_http}/v2/models/sentiment/infer"

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient() as client:
            bodies = [GOOD, *(body for body, _ in BAD.values()), GOOD] * 3
            return await asyncio.gather(*(_post(client, url, body) for body in bodies))

    replies = asyncio.run(burst())
    expected = [None, *(message for _, message in BAD.values()), None] * 3
    for reply, message in zip(replies, expected):
        if message is None:
            assert reply.status_code == 200, reply.text
        else:
            assert reply.status_code == 400, reply.text
            assert message in reply.json()["error"]
    # The batcher is still alive: a request after the burst is answered.
    assert httpx.post(url, json=GOOD, timeout=30).status_code == 200


def test_a_detector_image_of_the_wrong_size_is_refused_not_batched(stack: LocalStack) -> None:
    url = f"{stack.triton_http}/v2/models/mammo_detector/infer"
    good = {"inputs": [_tensor("image", np.zeros((1, 1, 256, 208), dtype=np.float32))]}
    wrong = {"inputs": [_tensor("image", np.zeros((1, 1, 128, 208), dtype=np.float32))]}

    async def both() -> list[httpx.Response]:
        async with httpx.AsyncClient() as client:
            return await asyncio.gather(_post(client, url, good), _post(client, url, wrong), _post(client, url, good))

    first, refused, second = asyncio.run(both())
    assert first.status_code == second.status_code == 200
    assert refused.status_code == 400 and "must have shape [-1, 1, 256, 208]" in refused.json()["error"]


def test_the_fallback_predictor_listens_on_loopback_only(stack: LocalStack) -> None:
    loopback = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}
    for port in (stack.config.triton.http, stack.config.triton.grpc, stack.config.http_port, stack.config.grpc_port):
        addresses = _listening_addresses(port)
        assert addresses and addresses <= loopback, f"port {port} listens on {addresses}"
