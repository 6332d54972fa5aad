"""duet's REST app as `create_app` builds it (KServe's routes, duet's error path and middleware) over a real
KServe model, in process (httpx's ASGI transport).

Retry-After on every 429 and 503, the v2 error body for a body that is not v2, the request body limit, and the
optional bearer token.
"""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi import FastAPI
from kserve import InferRequest, InferResponse, Model
from kserve.model_repository import ModelRepository
from kserve.protocol.model_repository_extension import ModelRepositoryExtension

from transformers_pre.dataplane import BinarySafeDataPlane
from transformers_pre.errors import BadRequest, Overloaded, PredictorUnavailable
from transformers_pre.server import create_app
from transformers_pre.settings import Settings


class RefusingModel(Model):
    """Answers with the names of its inputs, or refuses the way an input's name says."""

    def __init__(self) -> None:
        super().__init__("m")
        self.ready = True

    async def predict(self, payload: InferRequest, headers: dict | None = None) -> InferResponse:
        names = [tensor.name for tensor in payload.inputs]
        if "overload" in names:
            raise Overloaded("too busy")
        if "down" in names:
            raise PredictorUnavailable("predictor down")
        if "bad" in names:
            raise BadRequest("bad tensor", image_index=0)
        return {"model_name": "m", "outputs": [{"name": "names", "shape": [len(names)], "datatype": "BYTES",
                                                "data": names}]}


def _app(**settings: object) -> FastAPI:
    models = ModelRepository()
    models.update(RefusingModel())
    return create_app(Settings(**settings), BinarySafeDataPlane(model_registry=models),
                      ModelRepositoryExtension(model_registry=models))


async def _post(body: object, headers: dict[str, str] | None = None,
                app: FastAPI | None = None) -> httpx.Response:
    transport = httpx.ASGITransport(app=app or _app())
    async with httpx.AsyncClient(transport=transport, base_url="http://duet") as client:
        return await client.post("/v2/models/m/infer", json=body, headers=headers or {})


def _large_body() -> dict:
    return {"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": ["a" * 4096]}]}


def _tensor(name: str) -> dict:
    return {"inputs": [{"name": name, "shape": [1], "datatype": "BYTES", "data": ["x"]}]}


async def test_an_answer_is_v2_json_with_its_content_type_and_request_id() -> None:
    reply = await _post(_tensor("ok"), {"x-request-id": "r-1"})
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["x-request-id"] == "r-1"
    assert reply.json()["outputs"][0]["data"] == ["ok"]


@pytest.mark.parametrize(("name", "status"), [("overload", 429), ("down", 503)])
async def test_429_and_503_carry_retry_after_from_the_setting(name: str, status: int) -> None:
    reply = await _post(_tensor(name), app=_app(retry_after_seconds=7))
    assert reply.status_code == status
    assert reply.headers["retry-after"] == "7"
    assert "error" in reply.json()


async def test_kserve_s_own_503_for_an_unknown_model_state_carries_retry_after_too() -> None:
    app = _app(retry_after_seconds=7)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://duet") as client:
        reply = await client.post("/v2/models/absent/infer", json=_tensor("ok"))
    assert reply.status_code == 404  # KServe's ModelNotFound: not a retry
    assert "retry-after" not in reply.headers


async def test_other_answers_carry_no_retry_after() -> None:
    assert "retry-after" not in (await _post(_tensor("ok"))).headers
    reply = await _post(_tensor("bad"))
    assert reply.status_code == 400 and "retry-after" not in reply.headers
    assert reply.json() == {"error": "image 0: bad tensor"}


@pytest.mark.parametrize("body", [{"not": "v2"}, {"inputs": [{"name": "x"}]}, [1, 2], "text",
                                  {"inputs": "all"}])
async def test_a_body_that_is_not_v2_is_a_400_with_a_v2_error(body: object) -> None:
    reply = await _post(body)
    assert reply.status_code == 400
    assert set(reply.json()) == {"error"}
    # KServe's route takes a JSON string as raw bytes: it is then refused as a binary-extension request.
    expected = "binary request needs" if body == "text" else "the body is not a v2 inference request: "
    assert reply.json()["error"].startswith(expected)


async def test_the_validation_error_never_quotes_the_values_sent() -> None:
    tensor = {"name": "x", "shape": "Jane Doe 1970-01-01", "datatype": "BYTES", "data": []}
    reply = await _post({"inputs": [tensor]})
    assert reply.status_code == 400
    assert "inputs.0.shape" in reply.json()["error"]
    assert "Jane" not in reply.text


async def test_a_body_over_the_limit_is_a_413_before_it_is_read() -> None:
    app = _app(max_request_bytes=2048)
    reply = await _post(_large_body(), app=app)
    assert reply.status_code == 413
    assert "the limit is 2048" in reply.json()["error"]
    assert (await _post(_tensor("ok"), app=app)).status_code == 200


async def test_bearer_token_is_off_by_default() -> None:
    assert (await _post(_tensor("ok"))).status_code == 200


async def test_bearer_token_when_set() -> None:
    app = _app(bearer_token="s3cret-token")
    missing = await _post(_tensor("ok"), app=app)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "error" in missing.json()
    wrong = await _post(_tensor("ok"), {"authorization": "Bearer nope"}, app=app)
    assert wrong.status_code == 401
    right = await _post(_tensor("ok"), {"authorization": "Bearer s3cret-token"}, app=app)
    assert right.status_code == 200
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://duet") as client:
        assert (await client.get("/v2/health/ready")).status_code == 200  # probes need no token
        assert (await client.get("/v2/models/m/ready")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200  # scrapers neither


async def test_a_chunked_body_over_the_limit_is_a_413_with_a_v2_error() -> None:
    body = json.dumps(_large_body()).encode()

    async def chunks():  # no Content-Length: counted as it arrives
        for start in range(0, len(body), 512):
            yield body[start:start + 512]

    app = _app(max_request_bytes=2048)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://duet") as client:
        reply = await client.post("/v2/models/m/infer", content=chunks(),
                                  headers={"content-type": "application/json"})
    assert reply.status_code == 413
    assert reply.json() == {"error": "the request body is over the limit of 2048 bytes"}


async def test_metrics_are_duet_s_exposition() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://duet") as client:
        reply = await client.get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")


def test_each_app_is_its_own_and_kserve_s_global_app_is_untouched() -> None:
    from kserve.model_server import app as kserve_app

    routes_before = len(kserve_app.routes)
    first, second = _app(), _app()
    assert first is not second
    assert len(kserve_app.routes) == routes_before
    infer_path = "/v2/models/{model_name}/infer"
    assert not any(getattr(route, "path", None) == infer_path for route in kserve_app.routes)


async def test_the_model_repository_extension_is_not_offered_so_no_client_can_unload_a_model() -> None:
    app = _app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://duet") as client:
        for path in ("/v2/repository/models/m/unload", "/v2/repository/models/m/load", "/v2/repository/index"):
            reply = await client.post(path)
            assert reply.status_code == 404, (path, reply.text)
            assert "error" in reply.json()
        assert (await client.get("/v2/models/m/ready")).status_code == 200
