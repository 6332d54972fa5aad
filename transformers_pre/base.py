"""What every duet transformer shares: request metrics, a predictor client, and cached predictor metadata."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kserve import Model
from kserve.model import InferenceVerb

from .errors import DuetError
from .metrics import INFLIGHT, PREDICTOR_RETRIES, REQUEST_SECONDS, REQUESTS, code_class
from .predictor import ModelMetadata, PredictorClient
from .settings import Settings


class DuetModel(Model):
    """A kserve.Model whose `predict` goes to one Triton model through `PredictorClient`.

    Subclasses implement `preprocess` (request -> prepared tensors), `predict` and `postprocess`; errors are
    `DuetError`s, which the adapters in `server.py` turn into the right status for REST and gRPC.
    """

    def __init__(self, name: str, predictor_model: str, settings: Settings, predictor: PredictorClient) -> None:
        super().__init__(name)
        self.predictor_model = predictor_model
        self.settings = settings
        self.predictor = predictor
        self._metadata: ModelMetadata | None = None
        self._metadata_lock = asyncio.Lock()
        # Series exist from the start at 0, so rates and ratios are defined before the first error or retry.
        for status_class in ("2xx", "4xx", "5xx"):
            REQUESTS.labels(name, status_class)
        PREDICTOR_RETRIES.labels(predictor_model)
        INFLIGHT.labels(name)

    async def predictor_metadata(self) -> ModelMetadata:
        """The predictor model's v2 metadata, fetched once (the predictor may start after the transformer)."""
        if self._metadata is None:
            async with self._metadata_lock:
                if self._metadata is None:
                    self._metadata = await self.predictor.metadata(self.predictor_model)
        return self._metadata

    def validate(self, payload: Any) -> Any:
        # KServe's check is for dict payloads; ours are typed objects built by preprocess.
        return payload

    async def __call__(self, body: Any, headers: dict[str, str] | None = None, verb: InferenceVerb = InferenceVerb.PREDICT):
        INFLIGHT.labels(self.name).inc()
        started = time.perf_counter()
        status = 500
        try:
            result = await super().__call__(body, headers, verb)
            status = 200
            return result
        except DuetError as error:
            status = int(error.status)
            raise
        finally:
            INFLIGHT.labels(self.name).dec()
            REQUESTS.labels(self.name, code_class(status)).inc()
            REQUEST_SECONDS.labels(self.name).observe(time.perf_counter() - started)
