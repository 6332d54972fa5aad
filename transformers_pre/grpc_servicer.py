"""KServe's v2 gRPC servicer with duet's versions: ModelMetadata answers `versions`, and a request's version
(ModelMetadata, ModelReady, ModelInfer) must be the served one (NOT_FOUND otherwise), as over REST.

The v2 gRPC ModelMetadataResponse has no field for model parameters: they are REST-only (docs/api.md).
"""

from __future__ import annotations

from grpc import ServicerContext
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.servicer import InferenceServicer

from .dataplane import BinarySafeDataPlane


class VersionedInferenceServicer(InferenceServicer):
    """InferenceServicer whose metadata carries the served version and whose requests are checked for it."""

    _data_plane: BinarySafeDataPlane

    async def ModelMetadata(self, request: pb.ModelMetadataRequest,
                            context: ServicerContext) -> pb.ModelMetadataResponse:
        self._data_plane.check_version(request.name, request.version)
        metadata = await self._data_plane.model_metadata(model_name=request.name)
        return pb.ModelMetadataResponse(name=metadata["name"], versions=metadata.get("versions", []),
                                        platform=metadata["platform"], inputs=metadata["inputs"],
                                        outputs=metadata["outputs"])

    async def ModelReady(self, request: pb.ModelReadyRequest,
                         context: ServicerContext) -> pb.ModelReadyResponse:
        self._data_plane.check_version(request.name, request.version)
        return await super().ModelReady(request, context)

    async def ModelInfer(self, request: pb.ModelInferRequest,
                         context: ServicerContext) -> pb.ModelInferResponse:
        self._data_plane.check_version(request.model_name, request.model_version)
        return await super().ModelInfer(request, context)
