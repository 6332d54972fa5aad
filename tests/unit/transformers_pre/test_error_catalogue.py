"""docs/api.md's error catalogue is complete: every status the service can return is in it, with the gRPC
code, retry and Retry-After the code gives it, and every error (duet's, KServe's, the router's) has the
documented `{"error": "..."}` shape.

The statuses come from the code, not from a list kept here: every DuetError class, every exception handler on
the app `create_app` builds (called with an instance of its exception), and real requests to that app for what
the router answers itself (404, 405) and for a malformed JSON body.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from kserve.model_repository import ModelRepository
from kserve.protocol.model_repository_extension import ModelRepositoryExtension
from starlette.exceptions import HTTPException
from starlette.requests import Request

import transformers_pre
from duet.paths import ROOT
from transformers_pre.dataplane import BinarySafeDataPlane
from transformers_pre.errors import GRPC_CODE_FOR_HTTP, RETRY_STATUSES, DuetError
from transformers_pre.predictor_client import PredictorClient
from transformers_pre.server import create_app
from transformers_pre.settings import PredictorSettings, Settings
from transformers_pre.text.model import SentimentModel

API_DOC = ROOT / "docs" / "api.md"
MODEL_REPOSITORY = ROOT / "models" / "model_repository"
# What the router answers itself, before any handler of duet's or KServe's runs.
ROUTER_STATUSES = {404, 405}


def catalogue() -> dict[int, dict[str, str]]:
    """docs/api.md's "## Errors" table: status -> its row (column header -> cell)."""
    text = API_DOC.read_text()
    section = text.split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = dict(zip(header, (cell.strip() for cell in line.strip("|").split("|"))))
        rows[int(cells["status"])] = cells
    return rows


def duet_error_classes() -> Iterator[type[DuetError]]:
    for module in pkgutil.walk_packages(transformers_pre.__path__, "transformers_pre."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    pending: list[type[DuetError]] = [DuetError]
    while pending:
        error_class = pending.pop()
        if error_class.__module__.startswith("transformers_pre."):
            yield error_class
        pending.extend(error_class.__subclasses__())


def _instance(error_class: type[Exception]) -> Exception:
    """An instance of a handled exception class, built from the first arguments it takes."""
    if issubclass(error_class, RequestValidationError):
        return error_class(errors=[{"type": "missing", "loc": ("body", "inputs"), "msg": "Field required"}])
    for arguments in (("x",), (1,), ()):
        try:
            return error_class(*arguments)
        except (TypeError, ValueError):
            continue
    raise AssertionError(f"cannot build a {error_class.__name__} to call its handler")


def _request() -> Request:
    return Request({"type": "http", "method": "POST", "path": "/v2/models/m/infer", "headers": [],
                    "query_string": b""})


def _app() -> FastAPI:
    models = ModelRepository()
    return create_app(Settings(), BinarySafeDataPlane(model_registry=models),
                      ModelRepositoryExtension(model_registry=models))


async def handler_statuses(app: FastAPI) -> dict[str, int]:
    """What each exception handler on `app` answers: handled class -> status (Starlette's HTTPException
    carries the router's own statuses, asked for by real requests below)."""
    statuses = {}
    for error_class, handler in app.exception_handlers.items():
        if isinstance(error_class, int):
            statuses[str(error_class)] = error_class
            continue
        if error_class is HTTPException or error_class.__name__.startswith("WebSocket"):
            continue  # the router's statuses are asked below; the app has no WebSocket route
        response = await handler(_request(), _instance(error_class))
        statuses[error_class.__name__] = response.status_code
    return statuses


async def test_every_status_the_service_can_return_is_in_the_catalogue_and_nothing_else() -> None:
    documented = set(catalogue())
    from_classes = {int(error_class.status) for error_class in duet_error_classes()}
    from_handlers = set((await handler_statuses(_app())).values())
    returned = from_classes | from_handlers | ROUTER_STATUSES
    missing, stale = returned - documented, documented - returned
    assert missing == set(), f"statuses missing from docs/api.md's catalogue: {missing}"
    assert stale == set(), f"the catalogue lists statuses nothing returns: {stale}"


def test_the_catalogue_gives_each_status_its_grpc_code_and_retry() -> None:
    for status, row in catalogue().items():
        code = GRPC_CODE_FOR_HTTP.get(HTTPStatus(status))
        if code is not None:
            assert row["gRPC code"] == code.name, f"{status}: gRPC {code.name}, documented {row['gRPC code']}"
        retry = "yes" if status in RETRY_STATUSES else "no"
        assert (row["retry"], row["Retry-After"]) == (retry, retry), f"{status}: retry, Retry-After: {retry}"
        assert re.fullmatch(r"`[^`]+`", row["example `error`"]), f"{status}: no example message"


@pytest.fixture(scope="module")
def served_app() -> FastAPI:
    """create_app over the real sentiment transformer, loaded from the built model (no predictor needed for
    refusals)."""
    if not (MODEL_REPOSITORY / "sentiment" / "tokenizer.json").exists():
        pytest.skip("sentiment not built (make models)")
    models = ModelRepository()
    model = SentimentModel(Settings(model_repository=Path(MODEL_REPOSITORY)),
                           PredictorClient("127.0.0.1:1", "grpc-v2", PredictorSettings()))
    model.load()
    models.update(model)
    return create_app(Settings(), BinarySafeDataPlane(model_registry=models),
                      ModelRepositoryExtension(model_registry=models))


@pytest.mark.parametrize(("method", "path", "body", "status", "names"), [
    ("GET", "/v2/models/nope", None, 404, "nope"),
    ("POST", "/v2/models/nope/infer", b'{"inputs": []}', 404, "nope"),
    ("GET", "/v2/models/sentiment/versions/1/ready", None, 404, "version '1'"),
    ("GET", "/v3/anything", None, 404, "/v3/anything"),
    ("GET", "/v2/models/sentiment/infer", None, 405, "allowed: POST"),
    ("DELETE", "/v2/models/sentiment", None, 405, "allowed: GET"),
    ("POST", "/v2/models/sentiment/infer", b'{"inputs": [', 400, "not valid JSON"),
    ("POST", "/v2/models/sentiment/infer", b'{"inputs": 3}', 400, "inputs"),
    ("POST", "/v1/models/sentiment:predict", b'{"instances": ["a"]}', 400, "/v2/models/sentiment/infer"),
])
async def test_framework_and_kserve_errors_have_the_documented_shape(
        served_app: FastAPI, method: str, path: str, body: bytes | None, status: int, names: str) -> None:
    transport = httpx.ASGITransport(app=served_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://duet") as client:
        reply = await client.request(method, path, content=body,
                                     headers={"content-type": "application/json"} if body else {})
    assert reply.status_code == status
    assert set(reply.json()) == {"error"}
    assert names in reply.json()["error"]
    assert status in catalogue()
    if status == 405:
        assert reply.headers["allow"]
