"""One error hierarchy for the transformers: each error carries the HTTP status it maps to.

The REST and gRPC adapters translate a `DuetError` into a v2 error body `{"error": "..."}` (or a gRPC status) in
one place (`server.py`); the core never builds responses by hand.
"""

from __future__ import annotations

from http import HTTPStatus

from grpc import StatusCode
from grpc_interceptor.exceptions import GrpcException

# KServe's gRPC interceptor hands any GrpcException to grpc-interceptor, which aborts with `status_code` and
# `details`; deriving from it is what gives gRPC clients the same meaning as REST clients.
GRPC_CODE_FOR_HTTP = {
    HTTPStatus.BAD_REQUEST: StatusCode.INVALID_ARGUMENT,
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: StatusCode.OUT_OF_RANGE,
    HTTPStatus.UNPROCESSABLE_ENTITY: StatusCode.FAILED_PRECONDITION,
    HTTPStatus.TOO_MANY_REQUESTS: StatusCode.RESOURCE_EXHAUSTED,
    HTTPStatus.SERVICE_UNAVAILABLE: StatusCode.UNAVAILABLE,
    HTTPStatus.BAD_GATEWAY: StatusCode.INTERNAL,
}


class DuetError(GrpcException):
    """Base error: `message` is safe to return to the client and to log (it never holds patient data)."""

    status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR

    def __init__(self, message: str, *, image_index: int | None = None) -> None:
        self.image_index = image_index
        prefix = f"image {image_index}: " if image_index is not None else ""
        self.message = prefix + message
        super().__init__(details=self.message, status_code=GRPC_CODE_FOR_HTTP.get(self.status, StatusCode.INTERNAL))

    def __str__(self) -> str:
        return self.message


class BadRequest(DuetError):
    """Malformed request: wrong tensor name/datatype/shape, undecodable bytes, unreadable DICOM."""

    status = HTTPStatus.BAD_REQUEST


class PayloadTooLarge(DuetError):
    """Request, image or batch over a configured cap (refused before any large allocation)."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class Unprocessable(DuetError):
    """Well-formed input the pipeline cannot process (not MG, unsupported syntax, no diagnostic image)."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY


class Overloaded(DuetError):
    """The predictor queue is full or the transformer's concurrency limit is reached; retry later."""

    status = HTTPStatus.TOO_MANY_REQUESTS


class PredictorUnavailable(DuetError):
    """The Triton predictor cannot be reached or is not ready (after bounded retries)."""

    status = HTTPStatus.SERVICE_UNAVAILABLE


class PredictorError(DuetError):
    """The predictor answered with an error that is not the client's fault."""

    status = HTTPStatus.BAD_GATEWAY
