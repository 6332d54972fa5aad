"""Who may call and how much they may send: the token check, its open paths, and the size limits."""

from __future__ import annotations

import asyncio

import pytest

from transformers_pre.access import (
    BodyTooLarge,
    check_bearer_token,
    check_rest_request,
    counted,
    is_open_path,
)
from transformers_pre.errors import PayloadTooLarge, Unauthenticated
from transformers_pre.settings import Settings


@pytest.mark.parametrize(("path", "open_"), [
    ("/", True), ("/metrics", True), ("/v2/health/live", True), ("/v2/health/ready", True),
    ("/v2/models/sentiment/ready", True), ("/v2/models/sentiment/infer", False),
    ("/v2/models/sentiment", False),
    ("/v1/models/sentiment:predict", False),
])
def test_only_probes_and_metrics_are_open(path: str, open_: bool) -> None:
    assert is_open_path(path) is open_


@pytest.mark.parametrize("header", ["Bearer s3cret", "bearer s3cret", "BEARER s3cret"])
def test_the_right_token_passes_whatever_the_scheme_s_case(header: str) -> None:
    check_bearer_token(header, "s3cret")


@pytest.mark.parametrize("header", ["", "s3cret", "Basic s3cret", "Bearer", "Bearer s3cre", "Bearer s3cret2"])
def test_anything_else_is_a_401_asking_for_a_bearer_token(header: str) -> None:
    with pytest.raises(Unauthenticated, match="Bearer") as refused:
        check_bearer_token(header, "s3cret")
    assert refused.value.headers == {"www-authenticate": "Bearer"}


def test_a_rest_request_needs_the_token_only_when_one_is_set_and_only_off_the_open_paths() -> None:
    check_rest_request("/v2/models/m/infer", {}, Settings())
    guarded = Settings(bearer_token="s3cret")
    with pytest.raises(Unauthenticated):
        check_rest_request("/v2/models/m/infer", {}, guarded)
    check_rest_request("/v2/models/m/infer", {"authorization": "Bearer s3cret"}, guarded)
    check_rest_request("/v2/health/ready", {}, guarded)


def test_a_declared_length_over_the_limit_is_a_413_naming_both() -> None:
    with pytest.raises(PayloadTooLarge, match="has 4096 bytes; the limit is 2048"):
        check_rest_request("/v2/models/m/infer", {"content-length": "4096"}, Settings(max_request_bytes=2048))
    check_rest_request("/v2/models/m/infer", {"content-length": "2048"}, Settings(max_request_bytes=2048))


def test_a_body_counted_as_it_arrives_is_refused_once_past_the_limit() -> None:
    pieces = [{"type": "http.request", "body": b"a" * 600, "more_body": True} for _ in range(4)]

    async def receive() -> dict:
        return pieces.pop(0)

    async def read_all() -> int:
        receive_counted, seen = counted(receive, 1500), 0
        while True:
            seen += len((await receive_counted())["body"])

    with pytest.raises(BodyTooLarge) as refused:
        asyncio.run(read_all())
    assert isinstance(refused.value.error, PayloadTooLarge)
    assert refused.value.status_code == 413
    assert refused.value.error.message == "the request body is over the limit of 1500 bytes"
    assert len(pieces) == 1  # refused on the third piece, not after reading everything
