"""What every duet transformer shares: request metrics, a predictor client, and cached predictor metadata."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from kserve import Model
from kserve.model import InferenceVerb

from .errors import DuetError, Overloaded
from .metrics import INFLIGHT, PREDICTOR_RETRIES, REQUEST_SECONDS, REQUESTS, code_class
from .predictor_client import ModelMetadata, PredictorClient
from .settings import Settings


class DuetModel(Model):
    """A kserve.Model whose `predict` goes to one Triton model through `PredictorClient`.

    Subclasses implement `preprocess` (request -> prepared tensors), `predict` and `postprocess`; errors are
    `DuetError`s, which `rest_errors.py` (REST) and KServe's gRPC interceptor turn into the right status.
    """

    def __init__(self, name: str, predictor_model: str, settings: Settings, predictor: PredictorClient,
                 max_inflight: int | None = None) -> None:
        super().__init__(name)
        self.predictor_model = predictor_model
        # Admission control: one event loop per process, so a plain counter is exact without a lock.
        self.max_inflight = max_inflight or settings.max_inflight_requests
        self._inflight = 0
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
        started = time.perf_counter()
        if self._inflight >= self.max_inflight:
            # Refused before any work: the admitted requests keep their latency, the client retries later.
            REQUESTS.labels(self.name, code_class(429)).inc()
            raise Overloaded(f"{self.name} is serving {self._inflight} requests, its limit; retry later")
        self._inflight += 1
        INFLIGHT.labels(self.name).inc()
        status = 500
        try:
            result = await super().__call__(body, headers, verb)
            status = 200
            return result
        except DuetError as error:
            status = int(error.status)
            raise
        finally:
            self._inflight -= 1
            INFLIGHT.labels(self.name).dec()
            REQUESTS.labels(self.name, code_class(status)).inc()
            REQUEST_SECONDS.labels(self.name).observe(time.perf_counter() - started)
