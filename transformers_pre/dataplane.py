"""KServe's DataPlane with duet's changes: binary BYTES stay bytes, responses serialised once, readiness that
asks the predictor about the model it serves. Transport-free: REST and gRPC both call it."""

from __future__ import annotations

import logging
from typing import Any

import grpc
import httpx
import orjson
from kserve import InferRequest
from kserve.protocol.dataplane import DataPlane

from .binary_request import decode_binary_request
from .errors import NotFound

logger = logging.getLogger("duet.server")


class BinarySafeDataPlane(DataPlane):
    """KServe's DataPlane, except that REST binary-extension BYTES stay bytes (`binary_request.py`)."""

    def encode(self, model_name: str, response: Any, headers: dict | None,
               req_attributes: dict) -> tuple[Any, dict]:
        """KServe's encoding, except that a plain v2 JSON response leaves as bytes serialised by orjson.

        Given a dict, KServe's route validates it into a pydantic `InferenceResponse` and FastAPI re-encodes
        that through `jsonable_encoder` and `json.dumps`, a measurable share of the CPU of a small request
        (docs/benchmarks.md). The response was built by `codecs.make_response`, so it is already a v2
        response. Its content type is added by `RequestContextMiddleware` (KServe's route drops it).
        """
        body, response_headers = super().encode(model_name, response, headers, req_attributes)
        if isinstance(body, dict) and not response_headers:  # not binary outputs, not a CloudEvent
            return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), response_headers
        return body, response_headers

    async def ready(self) -> bool:
        """Server readiness; with the predictor health check, False (503) while the predictor is not ready or
        unreachable, where KServe's check fails with a 500: its gRPC check raises when the predictor is down,
        and its REST check parses the answer as JSON, while Triton answers with a bare status code (as the v2
        protocol allows), so the status code is read here instead."""
        config = self.predictor_config
        if not (config and config.predictor_health_check):
            return await super().ready()
        try:
            if config.predictor_protocol != "v2":
                return await super().ready()
            async with httpx.AsyncClient(timeout=config.predictor_request_timeout_seconds) as client:
                response = await client.get(f"{config.predictor_base_url}/v2/health/ready")
            return response.status_code == 200
        except (grpc.RpcError, httpx.HTTPError) as error:
            logger.debug("predictor readiness: %s", error)
            return False

    async def model_ready(self, model_name: str, disable_predictor_health_check: bool = False) -> bool:
        """Model readiness with KServe's --enable_predictor_health_check asking the predictor about the model
        it serves (`DuetModel.predictor_model`, e.g. mammo_detector), not the public name in the URL
        (mammography), which Triton does not know: KServe's own check would answer 'not ready' forever."""
        model = self.model_registry.get_model(model_name)
        predictor_model = getattr(model, "predictor_model", None)
        config = self.predictor_config
        if (predictor_model is None or disable_predictor_health_check
                or not (config and config.predictor_health_check)):
            return await super().model_ready(model_name, disable_predictor_health_check)
        if not await self.model_registry.is_model_ready(model_name):
            return False
        try:
            if config.predictor_protocol == "grpc-v2":
                return await self.grpc_client.is_model_ready(model_name=predictor_model)
            return await self.rest_client.is_model_ready(base_url=config.predictor_base_url,
                                                         model_name=predictor_model)
        except (grpc.RpcError, httpx.HTTPError) as error:
            logger.debug("predictor readiness of %s: %s", predictor_model, error)
            return False

    def check_version(self, model_name: str, model_version: str | None) -> None:
        """A versioned route's or gRPC request's version: KServe's 404 for an unknown model, duet's 404
        (`NotFound`) for any version but the one served. Empty: no version asked."""
        model = self.get_model_from_registry(model_name)
        check = getattr(model, "check_version", None)
        if model_version and check is not None:
            check(model_version)
        elif model_version:
            raise NotFound(f"model {model_name!r} is not versioned; ask without a version")

    async def model_metadata(self, model_name: str) -> dict[str, Any]:
        """KServe's metadata (name, platform, inputs, outputs from the model's contract), plus `versions` (the
        one served) and the model's `parameters` (version, recipe and digest from its card, labels)."""
        metadata = await super().model_metadata(model_name)
        model = self.get_model_from_registry(model_name)
        version = getattr(model, "version", None)
        if version:
            metadata["versions"] = [version]
        parameters = getattr(model, "metadata_parameters", None)
        if parameters is not None:
            metadata["parameters"] = parameters()
        return metadata

    def decode_inference_request(self, body: Any, headers: dict, model_name: str) -> InferRequest:
        if not isinstance(body, bytes):
            return super().decode_inference_request(body, headers, model_name)
        return decode_binary_request(body, headers, model_name)
