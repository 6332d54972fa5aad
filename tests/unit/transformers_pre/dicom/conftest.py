"""Fixtures for the mammography transformer's unit tests: synthetic DICOM and a real ONNX stand-in detector.

The stand-in detector is a small hand-built ONNX graph meeting the `mammo_detector` contract: it marks local
bright spots (twice-smoothed 5x5 mean minus 31x31 mean, 9x9 peak suppression, top-K) with fixed 12-pixel boxes,
reports the best spot's score as malignancy, and calls an image diagnostic when its brightest pixel exceeds 0.3. Being
deterministic, it lets tests check that a bright spot placed at known stored pixels comes back at those pixels.
It is run by ONNX Runtime in this process (`InProcessOnnxPredictor`), standing in for the gRPC hop to Triton.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from kserve import InferInput, InferRequest
from kserve.protocol.infer_type import RequestedOutput
from onnx import TensorProto, helper

from models.detector.phantom import CLASS_NAMES
from transformers_pre.predictor_client import ModelMetadata, TensorSpec
from transformers_pre.settings import Settings

STANDIN_HW = (288, 224)  # deliberately not the real detector's size: the transformer must read it from metadata
STANDIN_K = 20
STANDIN_HALF_BOX = 6.0
OUTPUTS = ("boxes", "scores", "labels", "image_index", "quality", "risk", "report")
_DTYPES = {"tensor(float)": "FP32", "tensor(int64)": "INT64", "tensor(float16)": "FP16"}


def _const(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(
        name + "_value", helper.np_dtype_to_tensor_dtype(value.dtype), value.shape, value.flatten().tolist()))


def build_standin_detector(
    path: Path, height: int = STANDIN_HW[0], width: int = STANDIN_HW[1], top_k: int = STANDIN_K
) -> Path:
    """Write the stand-in detector ONNX (opset 17, dynamic batch) to `path`."""
    nodes = [
        _const("w", np.array(width, np.int64)),
        _const("k", np.array([top_k], np.int64)),
        _const("half", np.array(STANDIN_HALF_BOX, np.float32)),
        _const("offset", np.array(0.5, np.float32)),
        _const("score_shift", np.array(0.08, np.float32)),
        _const("score_gain", np.array(40.0, np.float32)),
        _const("quality_shift", np.array(0.3, np.float32)),
        _const("quality_gain", np.array(20.0, np.float32)),
        _const("flat_shape", np.array([0, -1], np.int64)),
        _const("zero_i", np.array(0, np.int64)),
        _const("axis2", np.array([2], np.int64)),
        _const("axis1", np.array([1], np.int64)),
        # Two 5x5 means make a 9x9 triangular kernel: a plateau (a bright disk) gets one peak at its centre.
        helper.make_node("AveragePool", ["image"], ["local1"], kernel_shape=[5, 5], pads=[2, 2, 2, 2],
                         count_include_pad=0),
        helper.make_node("AveragePool", ["local1"], ["local"], kernel_shape=[5, 5], pads=[2, 2, 2, 2],
                         count_include_pad=0),
        helper.make_node("AveragePool", ["image"], ["background"], kernel_shape=[31, 31], pads=[15] * 4,
                         count_include_pad=0),
        helper.make_node("Sub", ["local", "background"], ["heat"]),
        helper.make_node("MaxPool", ["heat"], ["peak"], kernel_shape=[9, 9], pads=[4] * 4),
        helper.make_node("Equal", ["heat", "peak"], ["is_peak"]),
        helper.make_node("Cast", ["is_peak"], ["is_peak_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["heat", "is_peak_f"], ["peaks"]),
        helper.make_node("Reshape", ["peaks", "flat_shape"], ["flat"]),
        helper.make_node("TopK", ["flat", "k"], ["values", "indices"], axis=-1),
        helper.make_node("Div", ["indices", "w"], ["row"]),
        helper.make_node("Mod", ["indices", "w"], ["col"]),
        helper.make_node("Cast", ["row"], ["row_f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["col"], ["col_f"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["row_f", "offset"], ["cy"]),
        helper.make_node("Add", ["col_f", "offset"], ["cx"]),
        helper.make_node("Sub", ["cx", "half"], ["x0"]),
        helper.make_node("Sub", ["cy", "half"], ["y0"]),
        helper.make_node("Add", ["cx", "half"], ["x1"]),
        helper.make_node("Add", ["cy", "half"], ["y1"]),
        *[helper.make_node("Unsqueeze", [n, "axis2"], [n + "_u"]) for n in ("x0", "y0", "x1", "y1")],
        helper.make_node("Concat", ["x0_u", "y0_u", "x1_u", "y1_u"], ["boxes"], axis=2),
        helper.make_node("Sub", ["values", "score_shift"], ["shifted"]),
        helper.make_node("Mul", ["shifted", "score_gain"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["scores"]),
        helper.make_node("Mul", ["indices", "zero_i"], ["classes"]),
        helper.make_node("ReduceMax", ["scores"], ["malignancy"], axes=[1], keepdims=1),
        helper.make_node("ReduceMax", ["image"], ["brightest"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["brightest", "axis1"], ["brightest_u"]),
        helper.make_node("Sub", ["brightest_u", "quality_shift"], ["q_shift"]),
        helper.make_node("Mul", ["q_shift", "quality_gain"], ["q_logit"]),
        helper.make_node("Sigmoid", ["q_logit"], ["quality"]),
    ]
    graph = helper.make_graph(
        nodes,
        "standin_mammo_detector",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, height, width])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", top_k, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", top_k]),
            helper.make_tensor_value_info("classes", TensorProto.INT64, ["batch", top_k]),
            helper.make_tensor_value_info("malignancy", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("quality", TensorProto.FLOAT, ["batch", 1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


class InProcessOnnxPredictor:
    """Stands in for `PredictorClient` (v2 gRPC to Triton): the same ONNX file run by ONNX Runtime in-process.

    Metadata and tensors are real; only the network hop is skipped. `calls` records each batch's shape.
    """

    def __init__(self, model_path: Path) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.calls: list[tuple[int, ...]] = []

    async def metadata(self, model_name: str) -> ModelMetadata:
        def spec(node) -> TensorSpec:
            shape = tuple(d if isinstance(d, int) else -1 for d in node.shape)
            return TensorSpec(node.name, _DTYPES[node.type], shape)

        return ModelMetadata(
            name=model_name,
            inputs={node.name: spec(node) for node in self.session.get_inputs()},
            outputs={node.name: spec(node) for node in self.session.get_outputs()},
        )

    async def infer(
        self, model_name: str, inputs: Mapping[str, np.ndarray], outputs: Sequence[str]
    ) -> dict[str, np.ndarray]:
        self.calls.append(tuple(next(iter(inputs.values())).shape))
        return dict(zip(outputs, self.session.run(list(outputs), dict(inputs))))

    async def close(self) -> None:
        return None


@pytest.fixture(scope="session")
def standin_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository holding the stand-in `mammo_detector` with its side files."""
    root = tmp_path_factory.mktemp("repository")
    folder = root / "mammo_detector"
    build_standin_detector(folder / "1" / "model.onnx")
    (folder / "labels.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    (folder / "thresholds.json").write_text(json.dumps({"score": 0.5, "quality": 0.5, "nms_iou": 0.3}))
    return root


@pytest.fixture()
def mammography(standin_repository: Path):
    """A loaded MammographyModel in front of the in-process stand-in detector."""
    from transformers_pre.dicom.model import MammographyModel

    predictor = InProcessOnnxPredictor(standin_repository / "mammo_detector" / "1" / "model.onnx")
    model = MammographyModel(Settings(model_repository=standin_repository), predictor)  # type: ignore[arg-type]
    model.load()
    yield model
    model.pools.shutdown()


def _dicom_request(blobs: Sequence[bytes], *, binary: bool = True, parameters: dict | None = None) -> InferRequest:
    """A v2 request with input `dicom` BYTES [n]: raw bytes (binary extension) or base64 strings (JSON)."""
    import base64

    infer_input = InferInput(name="dicom", shape=[len(blobs)], datatype="BYTES")
    outputs = None
    if binary:
        infer_input.set_data_from_numpy(np.array(list(blobs), dtype=object), binary_data=True)
        # What tritonclient.http sends with binary outputs requested.
        outputs = [RequestedOutput(name, {"binary_data": True}) for name in OUTPUTS]
    else:
        infer_input.data = [base64.b64encode(blob).decode() for blob in blobs]
    return InferRequest(model_name="mammography", infer_inputs=[infer_input], parameters=parameters,
                        request_outputs=outputs)


@pytest.fixture()
def dicom_request():
    """Build a v2 request holding DICOM files (see `_dicom_request`)."""
    return _dicom_request


@pytest.fixture()
def both_paths():
    """Prepare one 1024 x 832 synthetic view of a syntax for a 128 x 104 model on both paths: returns
    (the SynthImage, its StudyImage, the resolution-aware ViewPixels, the full-resolution ViewPixels)."""
    from duet.synthetic_dicom import synth_image
    from transformers_pre.dicom.pixels import prepare_pixels
    from transformers_pre.dicom.study import read_study

    def prepare(syntax: str):
        image = synth_image(8, rows=1024, columns=832, syntax=syntax, n_lesions=2, degraded=False)
        blob = image.to_bytes()
        study = read_study([blob], Settings().dicom)[0]
        reduced, full = (prepare_pixels(blob, study.header, study.laterality, (128, 104), resolution_aware=aware)
                         for aware in (True, False))
        return image, study, reduced, full

    return prepare
