"""One error hierarchy for the transformers: each error carries the HTTP status it maps to.

Every refusal, wherever it is decided (a codec, the middleware's size and token checks, a predictor call), is
a `DuetError`. REST renders it in one place (`rest_errors.error_response`, a v2 error body `{"error":
"..."}`); gRPC in one place too (KServe's exception interceptor reads the `status_code` and `details` set
here, and `grpc_interceptors.py` adds retry-after). The statuses after which a client should retry are derived
from the classes below, for both transports.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from types import MappingProxyType
from typing import ClassVar

from grpc import StatusCode
from grpc_interceptor.exceptions import GrpcException

# KServe's gRPC interceptor hands any GrpcException to grpc-interceptor, which aborts with `status_code` and
# `details`; deriving from it is what gives gRPC clients the same meaning as REST clients.
GRPC_CODE_FOR_HTTP = {
    HTTPStatus.BAD_REQUEST: StatusCode.INVALID_ARGUMENT,
    HTTPStatus.UNAUTHORIZED: StatusCode.UNAUTHENTICATED,
    HTTPStatus.NOT_FOUND: StatusCode.NOT_FOUND,
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: StatusCode.OUT_OF_RANGE,
    HTTPStatus.UNPROCESSABLE_ENTITY: StatusCode.FAILED_PRECONDITION,
    HTTPStatus.TOO_MANY_REQUESTS: StatusCode.RESOURCE_EXHAUSTED,
    HTTPStatus.SERVICE_UNAVAILABLE: StatusCode.UNAVAILABLE,
    HTTPStatus.BAD_GATEWAY: StatusCode.INTERNAL,
}


class DuetError(GrpcException):
    """Base error: `message` is safe to return to the client and to log (it never holds patient data)."""

    status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR
    # True where the client should come back later (REST: a Retry-After header; gRPC: retry-after metadata).
    retry_later: bool = False
    # Extra REST response headers this refusal carries.
    headers: ClassVar[Mapping[str, str]] = MappingProxyType({})

    def __init__(self, message: str, *, image_index: int | None = None) -> None:
        self.image_index = image_index
        prefix = f"image {image_index}: " if image_index is not None else ""
        self.message = prefix + message
        code = GRPC_CODE_FOR_HTTP.get(self.status, StatusCode.INTERNAL)
        super().__init__(details=self.message, status_code=code)

    def __str__(self) -> str:
        return self.message


class BadRequest(DuetError):
    """Malformed request: wrong tensor name/datatype/shape, undecodable bytes, unreadable DICOM."""

    status = HTTPStatus.BAD_REQUEST


class Unauthenticated(DuetError):
    """A bearer token is required and the request carries none, or a wrong one."""

    status = HTTPStatus.UNAUTHORIZED
    headers: ClassVar[Mapping[str, str]] = MappingProxyType({"www-authenticate": "Bearer"})


class NotFound(DuetError):
    """A model version that is not the one served, or a KServe route duet does not offer (KServe answers an
    unknown model with its own 404)."""

    status = HTTPStatus.NOT_FOUND


class PayloadTooLarge(DuetError):
    """Request, image or batch over a configured cap (refused before any large allocation)."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class Unprocessable(DuetError):
    """Well-formed input the pipeline cannot process (not MG, unsupported syntax, no diagnostic image)."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY


class Overloaded(DuetError):
    """The predictor queue is full or the transformer's concurrency limit is reached; retry later."""

    status = HTTPStatus.TOO_MANY_REQUESTS
    retry_later = True


class PredictorUnavailable(DuetError):
    """The Triton predictor cannot be reached or is not ready (after bounded retries)."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    retry_later = True


class ModelStillBuilding(DuetError):
    """The model is named but its build has not finished yet (the local stack's first run: `duet up --build`)."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    retry_later = True


class PredictorError(DuetError):
    """The predictor answered with an error that is not the client's fault."""

    status = HTTPStatus.BAD_GATEWAY


# Statuses after which a client should retry, whoever answers them (duet, or KServe's own 503 while a model or
# the server is not ready): REST adds Retry-After to these statuses, gRPC adds retry-after metadata to these
# codes.
RETRY_STATUSES = frozenset({int(Overloaded.status), int(PredictorUnavailable.status)})
RETRY_GRPC_CODES = frozenset(GRPC_CODE_FOR_HTTP[HTTPStatus(status)] for status in RETRY_STATUSES)
