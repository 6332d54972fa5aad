"""duet's REST handlers and middleware on a real FastAPI app, in process (httpx's ASGI transport).

Retry-After on every 429 and 503, the v2 error body for a body that is not v2, the request body limit, and the
optional bearer token.
"""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from kserve.protocol.rest.v2_datamodels import InferenceRequest

from transformers_pre import server
from transformers_pre.errors import BadRequest, Overloaded, PredictorUnavailable
from transformers_pre.settings import Settings


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/v2/models/m/infer")
    async def infer(request: InferenceRequest) -> dict:
        names = [tensor.name for tensor in request.inputs]
        if "overload" in names:
            raise Overloaded("too busy")
        if "down" in names:
            raise PredictorUnavailable("predictor down")
        if "bad" in names:
            raise BadRequest("bad tensor", image_index=0)
        return {"ok": names}

    @app.get("/v2/health/ready")
    async def ready() -> dict:
        return {"ready": True}

    app.add_exception_handler(server.DuetError, server.duet_error_handler)
    app.add_exception_handler(RequestValidationError, server.validation_error_handler)
    app.add_middleware(server.RequestContextMiddleware)
    app.add_exception_handler(server.BodyTooLarge, server.body_too_large_handler)
    return app


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch):
    def configure(**values: object) -> None:
        monkeypatch.setattr(server, "settings", lambda: Settings(**values))

    configure()
    return configure


async def _post(body: object, headers: dict[str, str] | None = None, path: str = "/v2/models/m/infer") -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://duet") as client:
        return await client.post(path, json=body, headers=headers or {})


def _tensor(name: str) -> dict:
    return {"inputs": [{"name": name, "shape": [1], "datatype": "BYTES", "data": ["x"]}]}


@pytest.mark.parametrize(("name", "status"), [("overload", 429), ("down", 503)])
async def test_429_and_503_carry_retry_after_from_the_setting(configured, name: str, status: int) -> None:
    configured(retry_after_seconds=7)
    reply = await _post(_tensor(name))
    assert reply.status_code == status
    assert reply.headers["retry-after"] == "7"
    assert "error" in reply.json()


async def test_other_answers_carry_no_retry_after(configured) -> None:
    assert "retry-after" not in (await _post(_tensor("ok"))).headers
    reply = await _post(_tensor("bad"))
    assert reply.status_code == 400 and "retry-after" not in reply.headers
    assert reply.json() == {"error": "image 0: bad tensor"}


@pytest.mark.parametrize("body", [{"not": "v2"}, {"inputs": [{"name": "x"}]}, [1, 2], "text", {"inputs": "all"}])
async def test_a_body_that_is_not_v2_is_a_400_with_a_v2_error(configured, body: object) -> None:
    reply = await _post(body)
    assert reply.status_code == 400
    assert set(reply.json()) == {"error"}
    assert reply.json()["error"].startswith("the body is not a v2 inference request: ")


async def test_the_validation_error_never_quotes_the_values_sent(configured) -> None:
    reply = await _post({"inputs": [{"name": "x", "shape": "Jane Doe 1970-01-01", "datatype": "BYTES", "data": []}]})
    assert reply.status_code == 400
    assert "inputs.0.shape" in reply.json()["error"]
    assert "Jane" not in reply.text


async def test_a_body_over_the_limit_is_a_413_before_it_is_read(configured) -> None:
    configured(max_request_bytes=2048)
    reply = await _post({"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["a" * 4096]}]})
    assert reply.status_code == 413
    assert "the limit is 2048" in reply.json()["error"]
    assert (await _post(_tensor("ok"))).status_code == 200


async def test_bearer_token_is_off_by_default(configured) -> None:
    assert (await _post(_tensor("ok"))).status_code == 200


async def test_bearer_token_when_set(configured) -> None:
    configured(bearer_token="s3cret-token")
    missing = await _post(_tensor("ok"))
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "error" in missing.json()
    wrong = await _post(_tensor("ok"), {"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = await _post(_tensor("ok"), {"authorization": "Bearer s3cret-token"})
    assert right.status_code == 200
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://duet") as client:
        assert (await client.get("/v2/health/ready")).status_code == 200  # probes need no token


async def test_a_chunked_body_over_the_limit_is_a_413_with_a_v2_error(configured) -> None:
    configured(max_request_bytes=2048)
    body = json.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["a" * 4096]}]}).encode()

    async def chunks():  # no Content-Length: counted as it arrives
        for start in range(0, len(body), 512):
            yield body[start:start + 512]

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://duet") as client:
        reply = await client.post("/v2/models/m/infer", content=chunks(), headers={"content-type": "application/json"})
    assert reply.status_code == 413
    assert reply.json() == {"error": "the request body is over the limit of 2048 bytes"}
