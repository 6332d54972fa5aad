"""Who may call, and how much they may send: the bearer-token check and the request size limit, for REST and
gRPC.

Each check raises a `DuetError` (`Unauthenticated`, `PayloadTooLarge`); the transports render it.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.types import Message, Receive

from .errors import PayloadTooLarge, Unauthenticated
from .settings import Settings

# Answered without a token even when one is required: probes and scrapers carry none. The REST paths and the
# gRPC methods are the same probes under each transport's names.
OPEN_PATHS = ("/", "/metrics", "/v2/health/live", "/v2/health/ready")
OPEN_GRPC_METHODS = tuple(f"/inference.GRPCInferenceService/{method}"
                          for method in ("ServerLive", "ServerReady", "ModelReady"))
TOKEN_REQUIRED = "a valid 'Authorization: Bearer' token is required"


def is_open_path(path: str) -> bool:
    """A REST path answered without a token (health probes, model readiness, metrics)."""
    return path in OPEN_PATHS or path.endswith("/ready")


def check_bearer_token(authorization: str, expected: str) -> None:
    """Unauthenticated unless `authorization` is `Bearer <expected>` (compared in constant time)."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected.encode()):
        raise Unauthenticated(TOKEN_REQUIRED)


def check_rest_request(path: str, headers: Mapping[str, str], settings: Settings) -> None:
    """The checks made before a REST body is read: the token (where one is required) and the declared
    length."""
    if settings.bearer_token and not is_open_path(path):
        check_bearer_token(headers.get("authorization", ""), settings.bearer_token)
    length = headers.get("content-length", "")
    if length.isdigit() and int(length) > settings.max_request_bytes:
        limit = settings.max_request_bytes
        raise PayloadTooLarge(f"the request body has {length} bytes; the limit is {limit}")


class BodyTooLarge(HTTPException):
    """Carries the PayloadTooLarge of a body without Content-Length (chunked) that grew past the limit while
    it was read. An HTTPException, because FastAPI turns any other exception raised while reading a body into
    its own 400; its REST handler renders `error` like any other DuetError."""

    def __init__(self, limit: int) -> None:
        self.error = PayloadTooLarge(f"the request body is over the limit of {limit} bytes")
        super().__init__(status_code=int(self.error.status), detail=self.error.message)


def counted(receive: Receive, limit: int) -> Receive:
    """`receive` that raises BodyTooLarge once more than `limit` body bytes have arrived."""
    seen = 0

    async def receive_counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return receive_counted
