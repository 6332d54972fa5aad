"""A model whose build is still running, over the real REST app (`create_app`, in process): listed, never
ready, and its infer and metadata routes answer 503 with Retry-After and a message that says it is building."""

from __future__ import annotations

import httpx
from kserve.model_repository import ModelRepository
from kserve.protocol.model_repository_extension import ModelRepositoryExtension

from transformers_pre.building import ModelBeingBuilt
from transformers_pre.dataplane import BinarySafeDataPlane
from transformers_pre.server import create_app
from transformers_pre.settings import Settings


async def _client() -> httpx.AsyncClient:
    models = ModelRepository()
    models.update(ModelBeingBuilt("mammography"))
    app = create_app(Settings(), BinarySafeDataPlane(model_registry=models),
                     ModelRepositoryExtension(model_registry=models))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://duet")


async def test_a_model_being_built_is_listed_but_not_ready() -> None:
    async with await _client() as client:
        assert "mammography" in (await client.get("/v2/models")).json()["models"]
        ready = await client.get("/v2/models/mammography/ready")
    assert ready.status_code == 503 and "retry-after" in ready.headers


async def test_requests_for_a_model_being_built_are_503_saying_so() -> None:
    body = {"inputs": [{"name": "dicom", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}
    async with await _client() as client:
        answers = [await client.post("/v2/models/mammography/infer", json=body),
                   await client.get("/v2/models/mammography")]
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert "retry-after" in answer.headers
        assert "still being built" in answer.json()["error"]
