"""What every duet transformer shares: request metrics, a predictor client, cached predictor metadata, and its
public contract (tensors, version, metadata parameters)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from kserve import InferRequest, InferResponse, Model
from kserve.model import InferenceVerb

from .codecs import make_response
from .contract import ContractViolation, ModelContract
from .errors import BadRequest, DuetError, NotFound, Overloaded
from .metrics import INFLIGHT, PREDICTOR_RETRIES, REQUEST_SECONDS, REQUESTS, code_class
from .predictor_client import ModelMetadata, PredictorClient
from .settings import Settings
from .versions import ArtifactIdentity


class DuetModel(Model):
    """A kserve.Model whose `predict` goes to one Triton model through `PredictorClient`.

    Subclasses declare their `contract`, implement `load` (which reads `artifact`, the served build),
    `preprocess` (request -> prepared tensors), `predict` and `postprocess` (which answers through `respond`);
    errors are `DuetError`s, which `rest_errors.py` (REST) and KServe's gRPC interceptor turn into the right
    status.
    """

    contract: ClassVar[ModelContract]

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
        self.artifact: ArtifactIdentity | None = None
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

    @property
    def version(self) -> str | None:
        """The served build's version (None until loaded): responses' `model_version`, the metadata's
        `versions`, the SR's Algorithm Version."""
        return self.artifact.version if self.artifact is not None else None

    def read_artifact(self) -> ArtifactIdentity:
        """Read which build is served from the model's folder (called by `load`)."""
        self.artifact = ArtifactIdentity.read(self.settings.model_repository / self.predictor_model,
                                              self.predictor_model)
        return self.artifact

    def check_version(self, requested: str | None) -> None:
        """A versioned route or gRPC `model_version`: only the served version exists (empty: any)."""
        if requested and requested != self.version:
            raise NotFound(f"model {self.name!r} has no version {requested[:40]!r}; it serves version "
                           f"{self.version!r}")

    def contract_dimensions(self) -> Mapping[str, int]:
        """Values of the contract's named dimensions, known once loaded (e.g. "classes")."""
        return {}

    def metadata_parameters(self) -> dict[str, Any]:
        """The model-level parameters of its v2 metadata: the version and what ties it to the card."""
        parameters: dict[str, Any] = dict(self.artifact.parameters()) if self.artifact else {}
        for spec in self.contract.optional_outputs:
            parameters[f"optional_output.{spec.name}"] = (
                f"{spec.datatype} {spec.resolved_shape(self.contract_dimensions())}: {spec.description}")
        return parameters

    def get_input_types(self) -> list[dict[str, Any]]:
        return [spec.metadata(self.contract_dimensions()) for spec in self.contract.inputs]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [spec.metadata(self.contract_dimensions()) for spec in self.contract.outputs]

    def respond(self, request: InferRequest, outputs: Mapping[str, np.ndarray], *,
                blobs: Mapping[str, bytes] | None = None,
                parameters: Mapping[str, Any] | None = None) -> InferResponse:
        """The v2 response: `outputs` checked against the contract, `model_version` the served version."""
        try:
            self.contract.check_outputs(outputs, self.contract_dimensions())
        except ContractViolation as violation:
            raise DuetError(f"{self.name}: {violation}") from None
        return make_response(request, self.name, outputs, blobs=blobs, parameters=parameters,
                             model_version=self.version)

    def validate(self, payload: Any) -> Any:
        # KServe's check is for dict payloads; ours are typed objects built by preprocess.
        return payload

    async def __call__(
        self, body: Any, headers: dict[str, str] | None = None, verb: InferenceVerb = InferenceVerb.PREDICT
    ):
        if not isinstance(body, InferRequest):
            # KServe's v1 routes (`/v1/models/<name>:predict|explain`) hand a model the raw JSON.
            raise BadRequest(f"{self.name} speaks the v2 protocol only: POST /v2/models/{self.name}/infer")
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
