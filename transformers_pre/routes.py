"""duet's v2 routes that replace KServe's: metadata with the model's parameters, and the versioned routes.

KServe 0.21 answers every `/v2/models/{name}/versions/{version}/...` route 501 and drops anything beyond
name, platform, inputs and outputs from the metadata (its response model has no `parameters`). Registered
before KServe's routes, these win (the first matching route does); the rest of each request is KServe's own
handler, so answers are otherwise identical.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, Response
from kserve.protocol.rest.v2_datamodels import InferenceRequest, ModelReadyResponse
from kserve.protocol.rest.v2_endpoints import V2Endpoints

from .dataplane import BinarySafeDataPlane


def add_versioned_routes(app: FastAPI, dataplane: BinarySafeDataPlane, endpoints: V2Endpoints) -> None:
    """Metadata and the versioned metadata, ready and infer routes on `app`, over KServe's `endpoints`."""

    async def duet_model_metadata(model_name: str) -> dict[str, Any]:
        return await dataplane.model_metadata(model_name)

    async def duet_versioned_metadata(model_name: str, model_version: str) -> dict[str, Any]:
        dataplane.check_version(model_name, model_version)
        return await dataplane.model_metadata(model_name)

    async def duet_versioned_ready(model_name: str, model_version: str) -> ModelReadyResponse:
        dataplane.check_version(model_name, model_version)
        return await endpoints.model_ready(model_name)

    async def duet_versioned_infer(raw_request: Request, raw_response: Response, model_name: str,
                              model_version: str, request_body: InferenceRequest | bytes) -> Any:
        dataplane.check_version(model_name, model_version)
        return await endpoints.infer(raw_request, raw_response, model_name, request_body)

    app.add_api_route("/v2/models/{model_name}", duet_model_metadata, methods=["GET"])
    app.add_api_route("/v2/models/{model_name}/versions/{model_version}", duet_versioned_metadata,
                      methods=["GET"])
    app.add_api_route("/v2/models/{model_name}/versions/{model_version}/ready", duet_versioned_ready,
                      methods=["GET"], response_model=ModelReadyResponse)
    app.add_api_route("/v2/models/{model_name}/versions/{model_version}/infer", duet_versioned_infer,
                      methods=["POST"], response_model=None)
