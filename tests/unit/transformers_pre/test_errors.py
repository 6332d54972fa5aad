"""Every refusal is a DuetError carrying both statuses; the retry statuses of both transports derive from
them."""

from __future__ import annotations

import pytest
from grpc import StatusCode

from transformers_pre.errors import (
    BadRequest,
    Overloaded,
    PayloadTooLarge,
    PredictorError,
    PredictorUnavailable,
    Unauthenticated,
    Unprocessable,
)


@pytest.mark.parametrize(
    ("error", "http", "grpc"),
    [
        (BadRequest, 400, StatusCode.INVALID_ARGUMENT),
        (Unauthenticated, 401, StatusCode.UNAUTHENTICATED),
        (PayloadTooLarge, 413, StatusCode.OUT_OF_RANGE),
        (Unprocessable, 422, StatusCode.FAILED_PRECONDITION),
        (Overloaded, 429, StatusCode.RESOURCE_EXHAUSTED),
        (PredictorUnavailable, 503, StatusCode.UNAVAILABLE),
        (PredictorError, 502, StatusCode.INTERNAL),
    ],
)
def test_each_error_maps_to_http_and_grpc(error: type, http: int, grpc: StatusCode) -> None:
    raised = error("modality is CT, expected MG", image_index=2)
    assert int(raised.status) == http
    assert raised.status_code == grpc
    assert raised.details == raised.message == "image 2: modality is CT, expected MG"
