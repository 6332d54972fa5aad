"""Admission control: a model admits a bounded number of requests at once and refuses the rest with 429."""

from __future__ import annotations

import asyncio

import pytest

from transformers_pre.base import DuetModel
from transformers_pre.errors import Overloaded
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


async def test_requests_beyond_the_bound_get_429_and_admitted_ones_complete() -> None:
    model = GatedModel(limit=2)
    admitted = [asyncio.create_task(model({"n": n})) for n in range(2)]
    await asyncio.sleep(0)  # both are now waiting inside the model
    with pytest.raises(Overloaded) as refused:
        await model({"n": 3})
    assert refused.value.status == 429
    model.gate.set()
    assert [(await task)[0] for task in admitted] == [{"n": 0}, {"n": 1}]
    assert (await model({"n": 4}))[0] == {"n": 4}  # the slots were given back


def test_the_bounds_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUET_MAX_INFLIGHT_REQUESTS", "7")
    monkeypatch.setenv("DUET_MAX_INFLIGHT_STUDIES", "3")
    settings = Settings()
    assert (settings.max_inflight_requests, settings.max_inflight_studies) == (7, 3)
