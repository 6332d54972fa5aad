"""The metadata and versioned routes of the app `create_app` builds, over the real transformers loaded from
the built models (in process, httpx's ASGI transport; refusals and metadata need no predictor)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from kserve.model_repository import ModelRepository
from kserve.protocol.model_repository_extension import ModelRepositoryExtension

from duet.paths import MODEL_REPOSITORY
from transformers_pre.base import DuetModel
from transformers_pre.dataplane import BinarySafeDataPlane
from transformers_pre.dicom.model import MammographyModel
from transformers_pre.dicom.report import Device
from transformers_pre.predictor_client import PredictorClient
from transformers_pre.server import create_app
from transformers_pre.settings import PredictorSettings, Settings
from transformers_pre.text.model import SentimentModel

MODEL_CLASSES = {"mammography": MammographyModel, "sentiment": SentimentModel}


@pytest.fixture(scope="module")
def models() -> dict[str, DuetModel]:
    if not (MODEL_REPOSITORY / "mammo_detector" / "card.json").exists():
        pytest.skip("models not built (make models)")
    loaded = {}
    for name, model_class in MODEL_CLASSES.items():
        model = model_class(Settings(model_repository=MODEL_REPOSITORY),
                            PredictorClient("127.0.0.1:1", "grpc-v2", PredictorSettings()))
        model.load()
        loaded[name] = model
    return loaded


@pytest.fixture
async def client(models: dict[str, DuetModel]) -> AsyncIterator[httpx.AsyncClient]:
    registry = ModelRepository()
    for model in models.values():
        registry.update(model)
    app = create_app(Settings(), BinarySafeDataPlane(model_registry=registry),
                     ModelRepositoryExtension(model_registry=registry))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://duet") as session:
        yield session


@pytest.mark.parametrize("name", MODEL_CLASSES)
async def test_metadata_lists_the_contract_the_version_and_its_card(
        client: httpx.AsyncClient, models: dict[str, DuetModel], name: str) -> None:
    model = models[name]
    metadata = (await client.get(f"/v2/models/{name}")).json()
    card = json.loads((MODEL_REPOSITORY / model.predictor_model / "card.json").read_text())
    labels = (MODEL_REPOSITORY / model.predictor_model / "labels.txt").read_text().split()
    assert [tensor["name"] for tensor in metadata["inputs"]] == [spec.name for spec in model.contract.inputs]
    assert [tensor["name"] for tensor in metadata["outputs"]] == [s.name for s in model.contract.outputs]
    assert all(tensor["datatype"] and tensor["shape"] for tensor in metadata["inputs"] + metadata["outputs"])
    assert metadata["versions"] == [model.version]
    parameters = metadata["parameters"]
    assert parameters["version"] == model.version
    assert parameters["onnx_sha256"] == card["artifacts"]["1/model.onnx"]
    assert parameters["recipe"] == (MODEL_REPOSITORY / model.predictor_model / ".recipe").read_text().strip()
    assert parameters["labels"].split(",") == labels


async def test_mammography_metadata_shapes_and_optional_report(client: httpx.AsyncClient) -> None:
    metadata = (await client.get("/v2/models/mammography")).json()
    shapes = {tensor["name"]: (tensor["datatype"], tensor["shape"]) for tensor in metadata["outputs"]}
    assert shapes == {"boxes": ("FP32", [-1, 4]), "scores": ("FP32", [-1]), "labels": ("BYTES", [-1]),
                      "image_index": ("INT32", [-1]), "quality": ("FP32", [-1]), "risk": ("FP32", [1])}
    assert metadata["inputs"] == [{"name": "dicom", "datatype": "BYTES", "shape": [-1]}]
    assert metadata["parameters"]["optional_output.report"].startswith("BYTES [1]")
    assert metadata["parameters"]["cleared_for_clinical_use"] is False


async def test_sentiment_probabilities_have_one_column_per_label(client: httpx.AsyncClient) -> None:
    metadata = (await client.get("/v2/models/sentiment")).json()
    labels = metadata["parameters"]["labels"].split(",")
    assert metadata["outputs"][0] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(labels)]}


def test_the_mammography_version_is_the_srs_device_version(models: dict[str, DuetModel]) -> None:
    model = models["mammography"]
    assert isinstance(model, MammographyModel)
    assert model.device.version == model.version
    assert model.artifact is not None
    assert Device.for_model("mammo_detector", model.artifact.fingerprint).version == model.version


@pytest.mark.parametrize("name", MODEL_CLASSES)
async def test_versioned_routes_answer_for_the_served_version_only(
        client: httpx.AsyncClient, models: dict[str, DuetModel], name: str) -> None:
    served = models[name].version
    ready = await client.get(f"/v2/models/{name}/versions/{served}/ready")
    assert ready.json() == {"name": name, "ready": True}
    assert (await client.get(f"/v2/models/{name}/versions/{served}")).json()["versions"] == [served]
    for path in (f"/v2/models/{name}/versions/1", f"/v2/models/{name}/versions/1/ready"):
        reply = await client.get(path)
        assert reply.status_code == 404
        assert reply.json() == {"error": f"model {name!r} has no version '1'; it serves version {served!r}"}
    refused = await client.post(f"/v2/models/{name}/versions/0000/infer", json={"inputs": []})
    assert refused.status_code == 404 and "no version '0000'" in refused.json()["error"]


async def test_the_served_versions_infer_route_reaches_the_model(client: httpx.AsyncClient,
                                                                 models: dict[str, DuetModel]) -> None:
    # A body the model refuses shows the request got past the version check to the model's own checks.
    body = {"inputs": [{"name": "txt", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}
    reply = await client.post(f"/v2/models/sentiment/versions/{models['sentiment'].version}/infer", json=body)
    assert reply.status_code == 400
    assert reply.json() == {"error": "input 'text' is required (got 'txt')"}
