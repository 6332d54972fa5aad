"""Fallback predictor: the model repository served over v2 REST and gRPC by KServe with ONNX Runtime.

Used where the bundled Triton cannot run. Same model names, tensor names and v2 metadata as Triton, and a small
dynamic batcher (requests gathered up to `max_batch_size` rows or `max_queue_delay_microseconds`, then one ONNX
Runtime call and the outputs split back by `models.triton_python_backend.batching`, as in the Triton
wrapper). Picks CUDA (and TensorRT when asked) where onnxruntime-gpu and a GPU exist.

Run as `python -m duet.local.ort_predictor --models-file models.json --http_port 8000 --grpc_port 8001`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort
from kserve import InferRequest, InferResponse, Model, model_server
from kserve.errors import InvalidInput
from kserve.utils.utils import from_np_dtype

from models.triton_python_backend.batching import concatenate, split
from transformers_pre.grpc_interceptors import duet_grpc_interceptors
from transformers_pre.kserve_compat import BoundModelServer

logger = logging.getLogger("duet.ort_predictor")

ONNX_TO_V2 = {"tensor(float)": "FP32", "tensor(int64)": "INT64", "tensor(int32)": "INT32", "tensor(float16)": "FP16"}
ONNX_TO_NUMPY = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
                 "tensor(float16)": np.float16}


def execution_providers(tensorrt: bool) -> list[str]:
    """CUDA (and TensorRT when asked) before CPU where onnxruntime-gpu sees a GPU; CPU only otherwise."""
    available = ort.get_available_providers()
    wanted = (["TensorrtExecutionProvider"] if tensorrt else []) + ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [provider for provider in wanted if provider in available]


def _tensor_metadata(tensor: ort.NodeArg) -> dict[str, Any]:
    """v2 metadata of an ONNX tensor, like Triton's: fixed axes as numbers, symbolic ones (batch) as -1."""
    shape = [dim if isinstance(dim, int) else -1 for dim in tensor.shape]
    return {"name": tensor.name, "datatype": ONNX_TO_V2[tensor.type], "shape": shape}


@dataclass
class _Pending:
    feeds: dict[str, np.ndarray]
    future: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class OnnxModel(Model):
    """One ONNX model behind a dynamic batcher."""

    def __init__(
        self, name: str, onnx: str, max_batch_size: int, max_queue_delay_us: int, providers: list[str]
    ) -> None:
        super().__init__(name)
        self.session = ort.InferenceSession(onnx, providers=providers)
        self.max_batch_size = max(1, max_batch_size)
        self.max_delay = max_queue_delay_us / 1e6
        self.inputs = self.session.get_inputs()
        self.outputs = self.session.get_outputs()
        self._queue: asyncio.Queue[_Pending] | None = None
        self.ready = True

    def get_input_types(self) -> list[dict[str, Any]]:
        return [_tensor_metadata(t) for t in self.inputs]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [_tensor_metadata(t) for t in self.outputs]

    async def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        try:
            feeds = {tensor.name: payload.get_input_by_name(tensor.name).as_numpy() for tensor in self.inputs}
        except AttributeError:
            raise InvalidInput(f"model {self.name} needs inputs {[t.name for t in self.inputs]}") from None
        except (ValueError, TypeError) as error:
            raise InvalidInput(f"model {self.name}: unreadable input tensor: {error}") from None
        for tensor in self.inputs:
            # A rank or type the model cannot take would only fail inside the batch, taking its neighbours with it.
            array, expected = feeds[tensor.name], _tensor_metadata(tensor)
            fixed_axes_differ = any(isinstance(want, int) and want > 0 and got != want
                                    for want, got in zip(tensor.shape[1:], array.shape[1:]))
            if array.ndim != len(tensor.shape) or array.shape[0] < 1 or fixed_axes_differ:
                raise InvalidInput(f"model {self.name}: input {tensor.name!r} must have shape "
                                   f"{expected['shape']}, got {list(array.shape)}")
            if array.dtype != ONNX_TO_NUMPY[tensor.type]:
                raise InvalidInput(f"model {self.name}: input {tensor.name!r} must have datatype "
                                   f"{expected['datatype']}, got {from_np_dtype(array.dtype)}")
        if self._queue is None:
            self._queue = asyncio.Queue()
            asyncio.get_running_loop().create_task(self._batcher())
        pending = _Pending(feeds)
        await self._queue.put(pending)
        results = await pending.future
        from kserve import InferOutput

        outputs = []
        for tensor, array in zip(self.outputs, results):
            output = InferOutput(name=tensor.name, shape=list(array.shape), datatype=from_np_dtype(array.dtype))
            output.set_data_from_numpy(array, binary_data=True)
            outputs.append(output)
        return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=outputs,
                             use_binary_outputs=True)

    async def _batcher(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            gathered = [await self._queue.get()]
            rows = next(iter(gathered[0].feeds.values())).shape[0]
            deadline = loop.time() + self.max_delay
            while rows < self.max_batch_size:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    pending = await asyncio.wait_for(self._queue.get(), timeout)
                except asyncio.TimeoutError:
                    break
                gathered.append(pending)
                rows += next(iter(pending.feeds.values())).shape[0]
            await self._run(gathered)

    async def _run(self, gathered: list[_Pending]) -> None:
        """One ONNX Runtime call for the gathered requests; whatever fails (padding, concatenation, the run)
        fails these requests only, never the batcher that serves the next ones."""
        try:
            feeds, sizes = concatenate([p.feeds for p in gathered], [tensor.name for tensor in self.inputs])
            results = await asyncio.to_thread(self.session.run, None, feeds)
        except Exception as error:  # noqa: BLE001 - the batch failed: every request in it gets the reason
            for pending in gathered:
                if not pending.future.done():
                    pending.future.set_exception(InvalidInput(f"model {self.name}: {error}"))
            return
        for pending, outputs in zip(gathered, split(results, sizes)):
            pending.future.set_result(outputs)


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser], conflict_handler="resolve")
    parser.add_argument("--models-file", required=True,
                        help="JSON list of {name, onnx, max_batch_size, max_queue_delay_us}")
    parser.add_argument("--tensorrt", action="store_true")
    parser.add_argument("--bind_address", default="127.0.0.1", help="Address of the REST and gRPC listeners.")
    args, _ = parser.parse_known_args()
    providers = execution_providers(args.tensorrt)
    logger.info("ONNX Runtime providers: %s", providers)
    with open(args.models_file) as handle:
        specs = json.load(handle)
    models = [OnnxModel(s["name"], s["onnx"], s["max_batch_size"], s["max_queue_delay_us"], providers) for s in specs]
    BoundModelServer(http_port=args.http_port, grpc_port=args.grpc_port, bind_address=args.bind_address,
                     grpc_interceptors=duet_grpc_interceptors(retry_after_seconds=1, bearer_token=None)).start(models)


if __name__ == "__main__":
    main()
