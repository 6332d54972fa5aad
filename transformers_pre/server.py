"""The transport adapters: KServe's ModelServer with duet's error mapping and a binary-safe v2 decoder.

The models (`text.model`, `dicom.model`) know nothing about HTTP or gRPC; this module wires them into KServe.
"""

from __future__ import annotations

import functools
import hmac
import logging
import os
import uuid
from typing import Any

import grpc
import httpx
import orjson
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kserve import InferInput, InferRequest, ModelServer
from kserve.errors import InvalidInput
from kserve.model_server import app as kserve_app
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import RequestedOutput
from kserve.protocol.rest.v2_datamodels import InferenceRequest
from prometheus_client import REGISTRY, CollectorRegistry, exposition, multiprocess
from pydantic import ValidationError
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .body import (
    RECEIVED_BODY,
    WHOLE_BODY_MIN_BYTES,
    ClientDisconnected,
    ReceiveBuffers,
    receive_whole_body,
    replay,
)
from .errors import DuetError
from .listeners import BoundModelServer
from .logs import REQUEST_ID
from .settings import Settings

logger = logging.getLogger("duet.server")

INFERENCE_HEADER = "inference-header-content-length"
# Answered without a token even when one is required: probes and scrapers carry none.
OPEN_PATHS = ("/", "/metrics", "/v2/health/live", "/v2/health/ready")
RETRY_STATUSES = (429, 503)


@functools.cache
def settings() -> Settings:
    """The process's settings, read once from the environment (each REST worker reads its own)."""
    return Settings()


@functools.cache
def receive_buffers() -> ReceiveBuffers:
    """The process's reusable buffers for large request bodies (`body.py`)."""
    return ReceiveBuffers(settings().receive_buffer_pool_bytes)


class BinarySafeDataPlane(DataPlane):
    """KServe's DataPlane, except that REST binary-extension BYTES stay bytes.

    KServe 0.21's `InferRequest.from_bytes` re-encodes every binary BYTES element as a UTF-8 string, which
    fails on (and echoes) arbitrary binary data such as a DICOM file. Here the raw bytes are kept, and the
    codecs decide per input whether they are text or blobs.
    """

    def encode(self, model_name: str, response: Any, headers: dict | None, req_attributes: dict) -> tuple[Any, dict]:
        """KServe's encoding, except that a plain v2 JSON response leaves as bytes serialised by orjson.

        Given a dict, KServe's route validates it into a pydantic `InferenceResponse` and FastAPI re-encodes that
        through `jsonable_encoder` and `json.dumps`: ~0.2 ms of CPU per response, a tenth of the transformer's
        work on a single headline (docs/benchmarks.md). The response was built by `codecs.make_response`, so it is
        already a v2 response. Its content type is added by `RequestContextMiddleware` (KServe's route drops it).
        """
        body, response_headers = super().encode(model_name, response, headers, req_attributes)
        if isinstance(body, dict) and not response_headers:  # not binary outputs, not a CloudEvent
            return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), response_headers
        return body, response_headers

    async def ready(self) -> bool:
        """Server readiness; with the predictor health check, False (503) while the predictor is not ready or
        unreachable, where KServe's check fails with a 500: its gRPC check raises when the predictor is down,
        and its REST check parses the answer as JSON, while Triton answers with a bare status code (as the v2
        protocol allows), so the status code is read here instead."""
        config = self.predictor_config
        if not (config and config.predictor_health_check):
            return await super().ready()
        try:
            if config.predictor_protocol != "v2":
                return await super().ready()
            async with httpx.AsyncClient(timeout=config.predictor_request_timeout_seconds) as client:
                response = await client.get(f"{config.predictor_base_url}/v2/health/ready")
            return response.status_code == 200
        except (grpc.RpcError, httpx.HTTPError) as error:
            logger.debug("predictor readiness: %s", error)
            return False

    async def model_ready(self, model_name: str, disable_predictor_health_check: bool = False) -> bool:
        """Model readiness with KServe's --enable_predictor_health_check asking the predictor about the model it
        serves (`DuetModel.predictor_model`, e.g. mammo_detector), not the public name in the URL (mammography),
        which Triton does not know: KServe's own check would answer 'not ready' forever."""
        model = self._model_registry.get_model(model_name)
        predictor_model = getattr(model, "predictor_model", None)
        config = self.predictor_config
        if predictor_model is None or disable_predictor_health_check or not (config and config.predictor_health_check):
            return await super().model_ready(model_name, disable_predictor_health_check)
        if not await self._model_registry.is_model_ready(model_name):
            return False
        try:
            if config.predictor_protocol == "grpc-v2":
                return await self.grpc_client.is_model_ready(model_name=predictor_model)
            return await self.rest_client.is_model_ready(base_url=config.predictor_base_url, model_name=predictor_model)
        except (grpc.RpcError, httpx.HTTPError) as error:
            logger.debug("predictor readiness of %s: %s", predictor_model, error)
            return False

    def decode_inference_request(self, body: Any, headers: dict, model_name: str) -> InferRequest:
        if not isinstance(body, bytes):
            return super().decode_inference_request(body, headers, model_name)
        json_length = headers.get(INFERENCE_HEADER)
        if json_length is None or not json_length.isdigit() or int(json_length) > len(body):
            raise InvalidInput(f"binary request needs a valid '{INFERENCE_HEADER}' header")
        check_binary_header(body[: int(json_length)])
        # A large body was received whole by RequestContextMiddleware, which gave the route only its JSON header.
        whole = RECEIVED_BODY.get()
        return parse_binary_request(body if whole is None else whole, int(json_length), model_name)


def check_binary_header(header_bytes: bytes) -> None:
    """The JSON header of a binary-extension request obeys the same v2 schema as a JSON body (KServe's
    InferenceRequest model), except that inputs sent as binary have no `data`; InvalidInput (400) otherwise."""
    try:
        header = orjson.loads(header_bytes)
    except orjson.JSONDecodeError as error:
        raise InvalidInput(f"unreadable v2 request header: {error}") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise InvalidInput("the v2 request header must be a JSON object with a list of 'inputs'")
    inputs = [{"data": [], **declared} if isinstance(declared, dict) else declared for declared in header["inputs"]]
    try:
        InferenceRequest.model_validate({**header, "inputs": inputs})
    except ValidationError as error:
        raise InvalidInput(describe_validation_error(RequestValidationError(error.errors()))) from None


def parse_binary_request(body: bytes | memoryview, json_length: int, model_name: str) -> InferRequest:
    """A v2 REST request with the binary tensor extension: JSON header, then each input's raw bytes (each
    input's `_raw_data` a view of `body`, never a copy)."""
    try:
        header = orjson.loads(body[:json_length])
        declared_inputs = header["inputs"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as error:
        raise InvalidInput(f"unreadable v2 request header: {error}") from None
    offset = json_length
    inputs: list[InferInput] = []
    for declared in declared_inputs:
        try:
            infer_input = InferInput(
                name=declared["name"],
                shape=declared["shape"],
                datatype=declared["datatype"],
                parameters=declared.get("parameters"),
            )
        except (KeyError, TypeError) as error:
            raise InvalidInput(f"input is missing a field: {error}") from None
        if declared.get("data") is not None:
            infer_input.data = declared["data"]
        else:
            size = (declared.get("parameters") or {}).get("binary_data_size")
            if not isinstance(size, int) or size < 0 or offset + size > len(body):
                raise InvalidInput(f"input {infer_input.name!r} has a missing or wrong 'binary_data_size'")
            # A view, not a copy: a 4-view study is ~100 MB (the BYTES codec reads its elements in place too).
            infer_input._raw_data = memoryview(body)[offset : offset + size]
            offset += size
        inputs.append(infer_input)
    outputs = [
        RequestedOutput(name=output["name"], parameters=output.get("parameters"))
        for output in header.get("outputs") or []
    ]
    return InferRequest(
        model_name=model_name,
        request_id=header.get("id"),
        parameters=header.get("parameters"),
        infer_inputs=inputs,
        request_outputs=outputs or None,
    )


async def duet_error_handler(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, DuetError)
    log = logger.warning if error.status < 500 else logger.error
    log("request failed: %s %s", int(error.status), error.message)
    return JSONResponse(status_code=int(error.status), content={"error": error.message})


class BodyTooLarge(HTTPException):
    """A body without Content-Length (chunked) grew past the limit while it was read. An HTTPException, because
    FastAPI turns any other exception raised while reading a body into its own 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"the request body is over the limit of {limit} bytes")


async def body_too_large_handler(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, BodyTooLarge)
    logger.warning("request failed: 413 %s", error.detail)
    return JSONResponse(status_code=413, content={"error": error.detail})


def _counted(receive: Receive, limit: int) -> Receive:
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


def describe_validation_error(error: RequestValidationError, limit: int = 3) -> str:
    """FastAPI's validation errors as one v2 error message: where and what, never the offending values
    (they may hold patient data)."""
    # KServe's infer route takes InferenceRequest or raw bytes: the bytes branch's complaint says nothing useful.
    errors = [item for item in error.errors() if tuple(item.get("loc", ()))[-1:] != ("bytes",)] or error.errors()
    problems = []
    for item in errors[:limit]:
        where = ".".join(str(part) for part in item.get("loc", ()) if part not in ("body", "InferenceRequest"))
        problems.append(f"{where or 'body'}: {item.get('msg', 'invalid')}")
    more = len(errors) - limit
    suffix = f" (and {more} more)" if more > 0 else ""
    return "the body is not a v2 inference request: " + "; ".join(problems) + suffix


async def validation_error_handler(_: Request, error: Exception) -> JSONResponse:
    """A body that is not v2 gets the v2 error body and 400, not FastAPI's 422 `{"detail": ...}`."""
    assert isinstance(error, RequestValidationError)
    message = describe_validation_error(error)
    logger.warning("request failed: 400 %s", message)
    return JSONResponse(status_code=400, content={"error": message})


async def metrics_handler(request: Request) -> Response:
    """Prometheus exposition; with several workers, the sum over all of them (PROMETHEUS_MULTIPROC_DIR)."""
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    encoder, content_type = exposition.choose_encoder(request.headers.get("accept", ""))
    return Response(content=encoder(registry), headers={"content-type": content_type})


def _refusal(request: Request) -> JSONResponse | None:
    """A 401 or 413 answered before the body is read, or None when the request may proceed."""
    config = settings()
    if config.bearer_token and request.url.path not in OPEN_PATHS and not request.url.path.endswith("/ready"):
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), config.bearer_token.encode()):
            logger.warning("request refused: 401 missing or wrong bearer token")
            return JSONResponse(status_code=401, content={"error": "a valid 'Authorization: Bearer' token is required"},
                                headers={"www-authenticate": "Bearer"})
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > config.max_request_bytes:
        message = f"the request body has {length} bytes; the limit is {config.max_request_bytes}"
        logger.warning("request failed: 413 %s", message)
        return JSONResponse(status_code=413, content={"error": message})
    return None


class RequestContextMiddleware:
    """Tag every log line of a request with its id (the client's x-request-id, or a new one) and echo it; refuse
    unauthenticated and oversized requests; tell clients of a 429 or 503 when to retry.

    Plain ASGI rather than `app.middleware("http")`: Starlette's BaseHTTPMiddleware runs the app in a task group
    and streams the response through memory channels, which cost about 1 ms of CPU per request here (py-spy,
    docs/benchmarks.md); this only wraps `send` to add headers.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex

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
                    headers["retry-after"] = str(settings().retry_after_seconds)
            await send(message)

        token = REQUEST_ID.set(request_id)
        try:
            refusal = _refusal(request)
            lengths = _whole_body_lengths(scope, request) if refusal is None else None
            if lengths is not None:
                await self._with_whole_body(scope, receive, send_with_headers, *lengths)
                return
            if refusal is None and "content-length" not in request.headers:
                receive = _counted(receive, settings().max_request_bytes)
            await (refusal or self.app)(scope, receive, send_with_headers)
        finally:
            REQUEST_ID.reset(token)

    async def _with_whole_body(self, scope: Scope, receive: Receive, send: Send, length: int,
                               json_length: int) -> None:
        """Receive the body into one buffer (`body.py`), then run the app on its JSON header alone, with the
        buffer in `RECEIVED_BODY` for `BinarySafeDataPlane` to read the tensors from."""
        buffers = receive_buffers()
        try:
            whole = await receive_whole_body(receive, length, buffers)
        except ClientDisconnected:
            return
        except ValueError as error:
            logger.warning("request failed: 400 %s", error)
            await JSONResponse(status_code=400, content={"error": str(error)})(scope, receive, send)
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
            buffers.give_back(whole.obj)


def _whole_body_lengths(scope: Scope, request: Request) -> tuple[int, int] | None:
    """(Content-Length, JSON header length) of a binary-extension inference request large enough to be received
    whole, else None (the request takes Starlette's path)."""
    if scope["method"] != "POST" or not scope["path"].endswith("/infer"):
        return None
    length, json_length = request.headers.get("content-length", ""), request.headers.get(INFERENCE_HEADER, "")
    if not (length.isdigit() and json_length.isdigit()):
        return None
    if int(length) < WHOLE_BODY_MIN_BYTES or not 0 < int(json_length) <= int(length):
        return None
    return int(length), int(json_length)


# Installed when this module is imported, which also happens inside every REST worker process KServe spawns
# (they unpickle BinarySafeDataPlane from here) before the app starts. Starlette picks the handler of the most
# specific exception class, and the first matching route, so these win over KServe's catch-alls.
kserve_app.add_exception_handler(DuetError, duet_error_handler)
kserve_app.add_exception_handler(RequestValidationError, validation_error_handler)
kserve_app.add_exception_handler(BodyTooLarge, body_too_large_handler)
kserve_app.add_api_route("/metrics", metrics_handler, methods=["GET"])
kserve_app.add_middleware(RequestContextMiddleware)


def make_model_server(**kwargs: Any) -> ModelServer:
    """A KServe ModelServer with duet's binary-safe DataPlane, listening on `bind_address` (keyword; every
    interface by default, as in a container) with Retry-After and the bearer-token check on gRPC too."""
    server = BoundModelServer(retry_after_seconds=settings().retry_after_seconds,
                              bearer_token=settings().bearer_token, **kwargs)
    server.dataplane = BinarySafeDataPlane(model_registry=server.registered_models)
    return server
