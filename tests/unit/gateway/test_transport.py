"""How the gateway sends: the v2 body in chunks with its Content-Length, and DICOM associations without Nagle."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from gateway.dispatch import BODY_CHUNK_BYTES, body_chunks, post_body
from gateway.tcp import send_without_delay


def test_body_chunks_cover_the_body_without_copying_it() -> None:
    body = bytes(range(256)) * (BODY_CHUNK_BYTES // 100)
    chunks = list(body_chunks(body))
    assert len(chunks) == -(-len(body) // BODY_CHUNK_BYTES)
    assert all(isinstance(chunk, memoryview) and chunk.obj is body for chunk in chunks)
    assert all(len(chunk) <= BODY_CHUNK_BYTES for chunk in chunks)
    assert b"".join(chunks) == body


class _Recorder(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.received.append((dict(self.headers), self.rfile.read(length)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    _Recorder.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/infer"
    server.shutdown()
    server.server_close()


def test_post_body_sends_the_whole_body_with_its_length_not_chunked_coding(recorder: str) -> None:
    body = bytes(range(256)) * (3 * BODY_CHUNK_BYTES // 256) + b"tail"
    with httpx.Client(timeout=30) as client:
        response = post_body(client, recorder, body, {"Inference-Header-Content-Length": "12"})
    assert response.status_code == 200
    (headers, received), = _Recorder.received
    assert received == body
    assert headers["Content-Length"] == str(len(body))
    assert "Transfer-Encoding" not in headers
    assert headers["Inference-Header-Content-Length"] == "12"


def test_associations_are_set_to_send_without_delay() -> None:
    scp = AE(ae_title="SCP")
    scp.add_supported_context(Verification)
    server = scp.start_server(("127.0.0.1", 0), block=False)
    try:
        scu = AE(ae_title="SCU")
        scu.add_requested_context(Verification)
        association = scu.associate("127.0.0.1", server.server_address[1], ae_title="SCP")
        assert association.is_established
        raw = association.dul.socket.socket
        assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0, "pynetdicom turned Nagle off itself"
        send_without_delay(association)
        assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert association.send_c_echo().Status == 0x0000
        association.release()
    finally:
        server.shutdown()
