"""Triton Python-backend model: one ONNX Runtime session behind Triton's dynamic batcher.

The Triton wheel used locally carries only the Python backend, so each ONNX model of the repository is served by
this file with the same tensor names, `max_batch_size` and `dynamic_batching` as its cluster config. Triton
hands `execute` every request its batcher gathered; they are concatenated into ONE ONNX Runtime call (token
sequences padded to the longest with zeros, which the attention mask ignores) and the outputs are split back, by
`models.triton_python_backend.batching`, which the ONNX Runtime fallback predictor uses too. (This file is copied
into the generated local repository; the stub imports that package from the venv, where duet is installed.)

Config parameters (written by duet's local-repository generator): `onnx_model` (absolute path), and
`intra_op_threads` (0 = ONNX Runtime's default, one per core), `allow_spinning` ("0" by default: ONNX Runtime's
worker threads block between batches instead of busy-waiting on cores the other processes need).
"""

from __future__ import annotations

import json

import onnxruntime as ort
import triton_python_backend_utils as pb_utils

from models.triton_python_backend.batching import concatenate, split


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameters.get("intra_op_threads", "0"))
        options.inter_op_num_threads = 1
        # Spinning threads burn the cores that tritonserver and the transformer need between batches (measured
        # in docs/benchmarks.md): block instead of spinning.
        options.add_session_config_entry("session.intra_op.allow_spinning", parameters.get("allow_spinning", "0"))
        self.session = ort.InferenceSession(
            parameters["onnx_model"], sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.input_names = [tensor["name"] for tensor in config["input"]]
        self.output_names = [tensor["name"] for tensor in config["output"]]

    def execute(self, requests: list) -> list:
        try:
            inputs = [
                {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.input_names}
                for request in requests
            ]
            feeds, sizes = concatenate(inputs, self.input_names)
            results = self.session.run(self.output_names, feeds)
        except Exception as error:  # noqa: BLE001 - one bad batch answers every request in it with the reason
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error))) for _ in requests]
        return [
            pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(name, rows) for name, rows in zip(self.output_names, outputs)]
            )
            for outputs in split(results, sizes)
        ]
