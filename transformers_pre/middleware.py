"""duet's REST middleware: request ids, the checks made before a body is read, Retry-After, large binary
bodies received whole."""

from __future__ import annotations

import logging
import uuid

from fastapi import Request
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .access import check_rest_request, counted
from .binary_request import INFERENCE_HEADER
from .body import (
    RECEIVED_BODY,
    WHOLE_BODY_MIN_BYTES,
    ClientDisconnected,
    ReceiveBuffers,
    receive_whole_body,
    replay,
)
from .errors import RETRY_STATUSES, BadRequest, DuetError
from .logs import REQUEST_ID
from .rest_errors import error_response
from .settings import Settings

logger = logging.getLogger("duet.server")


class RequestContextMiddleware:
    """Tag every log line of a request with its id (the client's x-request-id, or a new one) and echo it;
    refuse unauthenticated and oversized requests; tell clients of a 429 or 503 when to retry.

    Plain ASGI rather than `app.middleware("http")`: Starlette's BaseHTTPMiddleware runs the app in a task
    group and streams the response through memory channels, which cost CPU on every request (py-spy,
    docs/benchmarks.md); this only wraps `send` to add headers.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        # One per app, so one per worker process.
        self.buffers = ReceiveBuffers(settings.receive_buffer_pool_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        retry_after = str(self.settings.retry_after_seconds)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["x-request-id"] = request_id
                if "content-type" not in headers and message["status"] == 200:
                    # KServe's infer route drops the content type of the bytes it returns: v2 JSON, or binary
                    # tensors after a JSON header (`inference-header-content-length`).
                    binary = INFERENCE_HEADER in headers
                    headers["content-type"] = "application/octet-stream" if binary else "application/json"
                if message["status"] in RETRY_STATUSES and "retry-after" not in headers:
                    # Every 429 and 503, whoever raised it (duet, KServe's ModelNotReady, a draining server).
                    headers["retry-after"] = retry_after
            await send(message)

        token = REQUEST_ID.set(request_id)
        try:
            try:
                check_rest_request(request.url.path, request.headers, self.settings)
            except DuetError as refusal:
                await error_response(refusal)(scope, receive, send_with_headers)
                return
            lengths = _whole_body_lengths(scope, request)
            if lengths is not None:
                await self._with_whole_body(scope, receive, send_with_headers, *lengths)
                return
            if "content-length" not in request.headers:
                receive = counted(receive, self.settings.max_request_bytes)
            await self.app(scope, receive, send_with_headers)
        finally:
            REQUEST_ID.reset(token)

    async def _with_whole_body(self, scope: Scope, receive: Receive, send: Send, length: int,
                               json_length: int) -> None:
        """Receive the body into one buffer (`body.py`), then run the app on its JSON header alone, with the
        buffer in `RECEIVED_BODY` for `binary_request.decode_binary_request` to read the tensors from."""
        try:
            whole = await receive_whole_body(receive, length, self.buffers)
        except ClientDisconnected:
            return
        except ValueError as error:
            await error_response(BadRequest(str(error)))(scope, receive, send)
            return
        # The header is parsed as the v2 binary extension whatever content type the client declared.
        headers = [(key, value) for key, value in scope["headers"] if key != b"content-type"]
        scope = {**scope, "headers": [*headers, (b"content-type", b"application/octet-stream")]}
        header_only = {"type": "http.request", "body": bytes(whole[:json_length]), "more_body": False}
        token = RECEIVED_BODY.set(whole)
        try:
            await self.app(scope, replay(header_only, receive), send)
        finally:
            RECEIVED_BODY.reset(token)
            # Reused only once no view of it is left (ReceiveBuffers.take checks).
            self.buffers.give_back(whole.obj)


def _whole_body_lengths(scope: Scope, request: Request) -> tuple[int, int] | None:
    """(Content-Length, JSON header length) of a binary-extension inference request large enough to be
    received whole, else None (the request takes Starlette's path)."""
    if scope["method"] != "POST" or not scope["path"].endswith("/infer"):
        return None
    length, json_length = request.headers.get("content-length", ""), request.headers.get(INFERENCE_HEADER, "")
    if not (length.isdigit() and json_length.isdigit()):
        return None
    if int(length) < WHOLE_BODY_MIN_BYTES or not 0 < int(json_length) <= int(length):
        return None
    return int(length), int(json_length)
