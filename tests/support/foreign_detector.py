"""A detector from outside the project: built here with `onnx.helper`, not by `models/` or torch.

It stands for an ML team's own model: a different input (FP16, 3 channels, 96 x 80), a different K (7), its
own two labels, and no build package, card or warmup. The graph is small but real: quality and malignancy are
sigmoids of the image's mean brightness, so a blank image is gated out as non-diagnostic while a mammogram is
not, and its boxes, scores and classes are fixed tables broadcast over the batch. Variants break one rule
each, for the tests of `duet models check`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CHANNELS, HEIGHT, WIDTH, TOP_K = 3, 96, 80, 7
LABELS = ("lesion", "microcalcification")
# x_min, y_min, x_max, y_max in model-input pixels; sorted by score, the last slots padded with score 0.
BOXES = np.array(
    [
        [10, 12, 30, 34],
        [40, 50, 60, 74],
        [12, 14, 29, 33],
        [50, 10, 70, 30],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
    ],
    dtype=np.float32,
)
SCORES = np.array([0.92, 0.81, 0.55, 0.12, 0.0, 0.0, 0.0], dtype=np.float32)
CLASSES = np.array([0, 1, 0, 1, 0, 0, 0], dtype=np.float32)


def build_graph(
    *, logits: bool = False, fixed_batch: bool = False, unsorted: bool = False, class_overflow: bool = False
) -> onnx.ModelProto:
    """The foreign detector; each flag breaks one contract rule (raw logits for quality, a fixed batch axis,
    unsorted scores, a class id its labels do not name)."""
    batch: int | str = 1 if fixed_batch else "batch"
    scores = SCORES[::-1].copy() if unsorted else SCORES
    classes = CLASSES.copy()
    if class_overflow:
        classes[0] = len(LABELS)
    constants = [
        numpy_helper.from_array(BOXES[None], "box_table"),
        numpy_helper.from_array(scores[None], "score_table"),
        numpy_helper.from_array(classes[None], "class_table"),
        numpy_helper.from_array(np.array(60.0, dtype=np.float32), "gain"),
        numpy_helper.from_array(np.array(0.05, dtype=np.float32), "floor"),
        numpy_helper.from_array(np.array(3.0, dtype=np.float32), "risk_gain"),
        numpy_helper.from_array(np.array(1.5, dtype=np.float32), "risk_offset"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "axis_two"),
    ]
    nodes = [
        helper.make_node("Cast", ["image"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["pixels"], ["brightness"], axes=[2, 3], keepdims=0),  # [B, C]
        helper.make_node("ReduceMean", ["brightness"], ["mean"], axes=[1], keepdims=1),  # [B, 1]
        helper.make_node("Sub", ["mean", "floor"], ["above_floor"]),
        helper.make_node("Mul", ["above_floor", "gain"], ["quality_logit"]),
        (
            helper.make_node("Identity", ["quality_logit"], ["quality"])
            if logits
            else helper.make_node("Sigmoid", ["quality_logit"], ["quality"])
        ),
        helper.make_node("Mul", ["mean", "risk_gain"], ["risk_scaled"]),
        helper.make_node("Sub", ["risk_scaled", "risk_offset"], ["risk_logit"]),
        helper.make_node("Sigmoid", ["risk_logit"], ["malignancy"]),
        # ones [B, 1]: broadcasts the fixed tables over the batch.
        helper.make_node("Mul", ["mean", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "one"], ["ones"]),
        helper.make_node("Mul", ["ones", "score_table"], ["scores"]),
        helper.make_node("Mul", ["ones", "class_table"], ["class_values"]),
        helper.make_node("Cast", ["class_values"], ["classes"], to=TensorProto.INT64),
        helper.make_node("Unsqueeze", ["ones", "axis_two"], ["ones_3d"]),
        helper.make_node("Mul", ["ones_3d", "box_table"], ["boxes"]),
    ]
    graph = helper.make_graph(
        nodes,
        "foreign_detector",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT16, [batch, CHANNELS, HEIGHT, WIDTH])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [batch, TOP_K, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, TOP_K]),
            helper.make_tensor_value_info("classes", TensorProto.INT64, [batch, TOP_K]),
            helper.make_tensor_value_info("malignancy", TensorProto.FLOAT, [batch, 1]),
            helper.make_tensor_value_info("quality", TensorProto.FLOAT, [batch, 1]),
        ],
        initializer=constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="a-team")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write_model_folder(folder: Path, **breakage: bool) -> Path:
    """A ready-made model folder as a team would hand it over: model.onnx, labels.txt, thresholds.json; no
    config.pbtxt (`duet models check --write-config` writes it)."""
    (folder / "1").mkdir(parents=True, exist_ok=True)
    onnx.save(build_graph(**breakage), str(folder / "1" / "model.onnx"))
    (folder / "labels.txt").write_text("\n".join(LABELS) + "\n")
    (folder / "thresholds.json").write_text(json.dumps({"score": 0.5, "quality": 0.5, "nms_iou": 0.5}))
    return folder
