"""Admission control: a model admits a bounded number of requests at once and refuses the rest with 429."""

from __future__ import annotations

import asyncio

import pytest
from kserve import InferRequest

from transformers_pre.base import DuetModel
from transformers_pre.errors import BadRequest, Overloaded
from transformers_pre.predictor_client import PredictorClient
from transformers_pre.settings import PredictorSettings, Settings


class GatedModel(DuetModel):
    """A model whose requests wait on a gate, so the test controls how many are in flight."""

    def __init__(self, limit: int) -> None:
        super().__init__("gated", "gated", Settings(), PredictorClient("127.0.0.1:1", "grpc-v2", PredictorSettings()),
                         max_inflight=limit)
        self.gate = asyncio.Event()
        self.ready = True

    async def preprocess(self, payload, headers=None):
        await self.gate.wait()
        return payload

    async def predict(self, payload, headers=None):
        return payload

    async def postprocess(self, result, headers=None, response_headers=None):
        return result


def _request(number: int) -> InferRequest:
    return InferRequest(model_name="gated", infer_inputs=[], request_id=str(number))


async def test_requests_beyond_the_bound_get_429_and_admitted_ones_complete() -> None:
    model = GatedModel(limit=2)
    admitted = [asyncio.create_task(model(_request(n))) for n in range(2)]
    await asyncio.sleep(0)  # both are now waiting inside the model
    with pytest.raises(Overloaded) as refused:
        await model(_request(3))
    assert refused.value.status == 429
    model.gate.set()
    assert [(await task)[0].id for task in admitted] == ["0", "1"]
    assert (await model(_request(4)))[0].id == "4"  # the slots were given back


async def test_a_v1_body_is_refused_with_400_naming_the_v2_route() -> None:
    """KServe's v1 routes hand the model raw JSON; duet's models speak v2 only."""
    with pytest.raises(BadRequest) as refused:
        await GatedModel(limit=1)({"instances": [1]})
    assert "POST /v2/models/gated/infer" in refused.value.message


def test_the_bounds_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUET_MAX_INFLIGHT_REQUESTS", "7")
    monkeypatch.setenv("DUET_MAX_INFLIGHT_STUDIES", "3")
    settings = Settings()
    assert (settings.max_inflight_requests, settings.max_inflight_studies) == (7, 3)
