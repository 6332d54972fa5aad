"""Large binary-extension bodies are received once into one buffer; the route sees only the JSON header.

Through duet's middleware on a real FastAPI app in process (httpx's ASGI transport), and `receive_whole_body` fed
the ASGI messages a server sends.
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from fastapi import FastAPI, Request

from transformers_pre.binary_request import INFERENCE_HEADER
from transformers_pre.body import (
    RECEIVED_BODY,
    WHOLE_BODY_MIN_BYTES,
    ClientDisconnected,
    ReceiveBuffers,
    receive_whole_body,
)
from transformers_pre.middleware import RequestContextMiddleware
from transformers_pre.settings import Settings


def _app(seen: dict) -> FastAPI:
    app = FastAPI()

    @app.post("/v2/models/m/infer")
    async def infer(request: Request) -> dict:
        seen["route_body"] = await request.body()
        seen["content_type"] = request.headers.get("content-type")
        whole = RECEIVED_BODY.get()
        seen["whole"] = None if whole is None else bytes(whole)
        seen["readonly"] = None if whole is None else whole.readonly
        return {"ok": True}

    app.add_middleware(RequestContextMiddleware, settings=Settings())
    return app


def _binary(payload_bytes: int) -> tuple[bytes, int]:
    payload = bytes(range(256)) * (payload_bytes // 256)
    header = json.dumps({"inputs": [{"name": "dicom", "shape": [1], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(payload) + 4}}]}).encode()
    return header + len(payload).to_bytes(4, "little") + payload, len(header)


async def _post(body: bytes, headers: dict[str, str], seen: dict) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app(seen)), base_url="http://duet") as client:
        return await client.post("/v2/models/m/infer", content=body, headers=headers)


async def test_a_large_binary_request_reaches_the_route_as_its_header_and_one_buffer() -> None:
    body, json_length = _binary(2 * WHOLE_BODY_MIN_BYTES)
    seen: dict = {}
    # A client that declares JSON: the header is still read as the binary extension's.
    response = await _post(body, {INFERENCE_HEADER: str(json_length), "content-type": "application/json"},
                           seen)
    assert response.status_code == 200
    assert seen["route_body"] == body[:json_length]
    assert seen["whole"] == body and seen["readonly"] is True
    assert seen["content_type"] == "application/octet-stream"


async def test_small_and_json_requests_take_the_usual_path() -> None:
    body, json_length = _binary(4096)
    seen: dict = {}
    await _post(body, {INFERENCE_HEADER: str(json_length)}, seen)
    assert seen["route_body"] == body and seen["whole"] is None
    large_json = json.dumps({"inputs": [], "pad": "x" * WHOLE_BODY_MIN_BYTES}).encode()
    await _post(large_json, {"content-type": "application/json"}, seen)
    assert seen["route_body"] == large_json and seen["whole"] is None


async def test_a_header_length_past_the_body_takes_the_usual_path_and_its_error() -> None:
    body, _ = _binary(2 * WHOLE_BODY_MIN_BYTES)
    seen: dict = {}
    await _post(body, {INFERENCE_HEADER: str(len(body) + 1)}, seen)
    assert seen["route_body"] == body and seen["whole"] is None


def _receive(messages: list[dict]):
    async def receive() -> dict:
        return messages.pop(0)

    return receive


async def test_pieces_are_assembled_in_order() -> None:
    pieces = [b"abc", b"", b"defg", b"h"]
    messages = [{"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
                for i, piece in enumerate(pieces)]
    assert bytes(await receive_whole_body(_receive(messages), 8)) == b"abcdefgh"


async def test_a_short_body_is_refused_and_a_disconnect_ends_the_read() -> None:
    with pytest.raises(ValueError, match="the body has 3 bytes; its Content-Length says 8"):
        await receive_whole_body(_receive([{"type": "http.request", "body": b"abc", "more_body": False}]), 8)
    with pytest.raises(ValueError, match="longer than its Content-Length of 2"):
        await receive_whole_body(_receive([{"type": "http.request", "body": b"abc", "more_body": False}]), 2)
    with pytest.raises(ClientDisconnected):
        await receive_whole_body(_receive([{"type": "http.request", "body": b"ab", "more_body": True},
                                           {"type": "http.disconnect"}]), 8)


async def test_a_buffer_is_reused_only_once_no_view_of_it_is_left() -> None:
    buffers = ReceiveBuffers(keep_bytes=1 << 20)
    body = await receive_whole_body(_receive([{"type": "http.request", "body": b"x" * 100, "more_body": False}]),
                                    100, buffers)
    first = id(body.obj)
    buffers.give_back(body.obj)
    pixels = np.frombuffer(body[10:20], np.uint8)  # as native_pixels reads a file in place
    del body
    held = buffers.take(100)
    assert id(held) != first  # a numpy array still reads the first buffer
    buffers.give_back(held)
    del held, pixels
    reused = buffers.take(100)
    assert id(reused) == first
    buffers.give_back(reused)
    larger = buffers.take(2 << 20)  # the kept one is too small: a new one
    assert larger is not reused and len(larger) == 2 << 20


def test_no_more_than_keep_bytes_are_kept_and_zero_keeps_nothing() -> None:
    buffers = ReceiveBuffers(keep_bytes=250)
    for size in (100, 200, 50):
        buffers.give_back(buffers.take(size))
        buffers.give_back(ReceiveBuffers(0).take(size))
    assert buffers.kept_bytes <= 250 and buffers.kept_bytes == 250  # 200 + 50, the largest that fit
    nothing = ReceiveBuffers(keep_bytes=0)
    nothing.give_back(nothing.take(10))
    assert nothing.kept_bytes == 0
