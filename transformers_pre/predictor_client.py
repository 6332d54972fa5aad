"""Calls to the Triton predictor through KServe's own async inference clients.

One place for the predictor's contract at run time: model metadata (the transformer reads tensor shapes from
it instead of constants), readiness, and inference with a deadline and bounded retries on UNAVAILABLE / 503
only. Errors become duet errors with the status the client should see.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc
import httpx
import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.grpc.grpc_predict_v2_pb2 import (
    ModelInferRequest,
    ModelInferResponse,
    ModelMetadataRequest,
)
from kserve.protocol.infer_type import RequestedOutput
from kserve.utils.numpy_codec import to_np_dtype
from kserve.utils.utils import from_np_dtype

from .errors import Overloaded, PredictorError, PredictorUnavailable
from .kserve_compat import grpc_stub, http_client
from .metrics import PREDICTOR_RETRIES
from .settings import PredictorSettings

logger = logging.getLogger("duet.predictor")


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a predictor model: v2 datatype and shape (-1 for a variable axis, batch axis included)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelMetadata:
    """The v2 metadata of a predictor model."""

    name: str
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]


# What Triton answers (as UNAVAILABLE) when its scheduler queue is full or a request timed out in it.
TRITON_QUEUE_REJECTIONS = ("Exceeds maximum queue size", "Request timeout expired")


def model_infer_request(
    model_name: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]
) -> ModelInferRequest:
    """The v2 gRPC request message itself, each tensor as raw little-endian bytes.

    Built directly rather than through KServe's `InferRequest.to_grpc()` (and read back without
    `InferResponse.from_grpc()`): the intermediate objects are a measurable share of the transformer's CPU on a
    small request (docs/benchmarks.md). The call still goes through KServe's client channel and stub.
    """
    request = ModelInferRequest(model_name=model_name)
    for name, array in inputs.items():
        request.inputs.add(name=name, datatype=from_np_dtype(array.dtype), shape=array.shape)
        request.raw_input_contents.append(np.ascontiguousarray(array).tobytes())
    for name in outputs:
        request.outputs.add(name=name)
    return request


def model_infer_outputs(reply: ModelInferResponse, model_name: str, wanted: Sequence[str]) -> dict[str, np.ndarray]:
    """The wanted numeric outputs of a v2 gRPC reply as numpy arrays (views of the reply's raw bytes)."""
    if len(reply.raw_output_contents) != len(reply.outputs):
        raise PredictorError(f"predictor model {model_name!r} answered without raw output contents")
    arrays = {}
    for tensor, raw in zip(reply.outputs, reply.raw_output_contents):
        dtype = to_np_dtype(tensor.datatype)
        if dtype is None or dtype == np.object_:
            raise PredictorError(f"predictor output {tensor.name!r} has datatype {tensor.datatype}, not a number")
        arrays[tensor.name] = np.frombuffer(raw, dtype=dtype).reshape(tuple(tensor.shape))
    missing = [name for name in wanted if name not in arrays]
    if missing:
        raise PredictorError(f"predictor model {model_name!r} returned no output {missing}")
    return {name: arrays[name] for name in wanted}


class _Retryable(Exception):
    """The predictor is unavailable for now; the call may be retried."""


class PredictorClient:
    """Async client for one Triton server, over v2 gRPC (default) or v2 REST."""

    def __init__(self, host: str, protocol: str, settings: PredictorSettings) -> None:
        self.host = host
        self.protocol = protocol
        self.settings = settings
        self._grpc: InferenceGRPCClient | None = None
        self._rest: InferenceRESTClient | None = None

    @property
    def base_url(self) -> str:
        return self.host if "://" in self.host else f"http://{self.host}"

    def _grpc_client(self) -> InferenceGRPCClient:
        if self._grpc is None:
            # Retries are ours (counted and bounded), so gRPC's transparent retry policy is switched off.
            self._grpc = InferenceGRPCClient(
                url=self.host,
                timeout=self.settings.timeout_seconds,
                channel_args=[
                    ("grpc.max_send_message_length", -1),
                    ("grpc.max_receive_message_length", -1),
                    ("grpc.enable_retries", 0),
                    # A restarted predictor is reached within a second of being ready, however long it was
                    # down (gRPC's default reconnect backoff grows to 120 s).
                    ("grpc.initial_reconnect_backoff_ms", 250),
                    ("grpc.max_reconnect_backoff_ms", 1000),
                ],
            )
        return self._grpc

    def _rest_client(self) -> InferenceRESTClient:
        if self._rest is None:
            self._rest = InferenceRESTClient(
                RESTConfig(protocol="v2", timeout=self.settings.timeout_seconds, retries=0)
            )
        return self._rest

    async def close(self) -> None:
        if self._grpc is not None:
            await self._grpc.close()
        if self._rest is not None:
            await self._rest.close()

    async def metadata(self, model_name: str) -> ModelMetadata:
        """The model's v2 metadata; 503 when the predictor cannot be reached."""
        return await self._with_retries(model_name, lambda: self._metadata_once(model_name))

    async def _metadata_once(self, model_name: str) -> ModelMetadata:
        if self.protocol == "grpc-v2":
            # InferenceGRPCClient has no metadata helper; its stub is the generated v2 service stub.
            reply = await self._call_grpc(
                grpc_stub(self._grpc_client()).ModelMetadata(
                    ModelMetadataRequest(name=model_name), timeout=self.settings.timeout_seconds
                )
            )
            inputs = [(t.name, t.datatype, tuple(t.shape)) for t in reply.inputs]
            outputs = [(t.name, t.datatype, tuple(t.shape)) for t in reply.outputs]
        else:
            body = await self._call_rest_json(f"/v2/models/{model_name}")
            inputs = [(t["name"], t["datatype"], tuple(t["shape"])) for t in body["inputs"]]
            outputs = [(t["name"], t["datatype"], tuple(t["shape"])) for t in body["outputs"]]
        return ModelMetadata(
            name=model_name,
            inputs={name: TensorSpec(name, dtype, shape) for name, dtype, shape in inputs},
            outputs={name: TensorSpec(name, dtype, shape) for name, dtype, shape in outputs},
        )

    async def infer(
        self, model_name: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """One inference call with binary tensors; returns the requested outputs as numpy arrays."""
        if self.protocol == "grpc-v2":
            grpc_request = model_infer_request(model_name, inputs, outputs)

            async def over_grpc() -> dict[str, np.ndarray]:
                reply = await self._call_grpc(
                    grpc_stub(self._grpc_client()).ModelInfer(grpc_request, timeout=self.settings.timeout_seconds)
                )
                return model_infer_outputs(reply, model_name, outputs)

            return await self._with_retries(model_name, over_grpc)
        infer_inputs = []
        for name, array in inputs.items():
            infer_input = InferInput(name=name, shape=list(array.shape), datatype=from_np_dtype(array.dtype))
            infer_input.set_data_from_numpy(np.ascontiguousarray(array), binary_data=True)
            infer_inputs.append(infer_input)
        request = InferRequest(
            model_name=model_name,
            infer_inputs=infer_inputs,
            request_outputs=[RequestedOutput(name, {"binary_data": True}) for name in outputs],
        )

        async def once() -> dict[str, np.ndarray]:
            try:
                response = await self._rest_client().infer(self.base_url, request, model_name=model_name)
            except httpx.HTTPError as error:
                raise self._map_http_error(error) from None
            by_name = {output.name: output for output in response.outputs}
            missing = [name for name in outputs if name not in by_name]
            if missing:
                raise PredictorError(f"predictor model {model_name!r} returned no output {missing}")
            return {name: by_name[name].as_numpy() for name in outputs}

        return await self._with_retries(model_name, once)

    async def _with_retries(self, model_name: str, call):
        backoff = self.settings.retry_backoff_seconds
        for attempt in range(self.settings.retries + 1):
            try:
                return await call()
            except _Retryable as error:
                if attempt == self.settings.retries:
                    raise PredictorUnavailable(
                        f"predictor model {model_name!r} at {self.host} is unavailable after "
                        f"{attempt + 1} attempts: {error}"
                    ) from None
                PREDICTOR_RETRIES.labels(model_name).inc()
                logger.warning("predictor unavailable, retrying in %.2fs: %s", backoff, error)
                await asyncio.sleep(backoff)
                backoff *= 2
        raise AssertionError("unreachable")

    async def _call_grpc(self, awaitable):
        try:
            return await awaitable
        except grpc.aio.AioRpcError as error:
            raise self._map_grpc_error(error) from None

    def _map_grpc_error(self, error: grpc.aio.AioRpcError) -> Exception:
        code, details = error.code(), (error.details() or "").partition("\n")[0][:300]
        if code == grpc.StatusCode.UNAVAILABLE and any(text in details for text in TRITON_QUEUE_REJECTIONS):
            # Triton's bounded queue said no: retrying at once would only add load.
            return Overloaded(f"predictor queue is full, retry later: {details}")
        if code == grpc.StatusCode.UNAVAILABLE:
            return _Retryable(details or "UNAVAILABLE")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return PredictorUnavailable(
                f"predictor did not answer within {self.settings.timeout_seconds:g}s"
            )
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return Overloaded(f"predictor queue is full, retry later: {details}")
        return PredictorError(f"predictor error {code.name}: {details}")

    async def _call_rest_json(self, path: str) -> dict:
        try:
            reply = await http_client(self._rest_client()).get(self.base_url + path)
            reply.raise_for_status()
            return reply.json()
        except httpx.HTTPError as error:
            raise self._map_http_error(error) from None

    def _map_http_error(self, error: httpx.HTTPError) -> Exception:
        if isinstance(error, httpx.TimeoutException):
            return PredictorUnavailable(f"predictor did not answer within {self.settings.timeout_seconds:g}s")
        if isinstance(error, httpx.TransportError):
            return _Retryable(str(error) or type(error).__name__)
        if isinstance(error, httpx.HTTPStatusError):
            status = error.response.status_code
            if status == 503:
                return _Retryable(f"HTTP {status}")
            if status == 429:
                return Overloaded("predictor queue is full, retry later")
            return PredictorError(f"predictor answered HTTP {status}")
        return PredictorError(str(error))


