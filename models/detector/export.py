"""ONNX export of the detector (decoding in the graph) and the ONNX Runtime vs torch check."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from models.detector.model import Detector, DetectorExport

INPUT_NAME = "image"
OUTPUT_NAMES = ("boxes", "scores", "classes", "malignancy", "quality")
OPSET = 18  # the exporter's native opset (>= 17, as Triton's ONNX Runtime backend needs)


def export_onnx(detector: Detector, path: Path, height: int, width: int) -> None:
    """Write the served graph: `image` FP32 [B,1,H,W] -> the five contract outputs, dynamic batch axis."""
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = DetectorExport(detector, height, width).eval()
    example = torch.zeros(2, 1, height, width)
    # torch.export (dynamo) keeps K static and the batch axis symbolic, and folds batch norm; the TorchScript
    # exporter loses the static K on the decoded outputs.
    batch = torch.export.Dim("batch", min=1)
    # The exporter logs every optional library it skips (torchvision ops) and deprecation notices: noise here.
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            _export(graph, example, path, batch)
        finally:
            onnx_logger.setLevel(level)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)


def _export(graph: DetectorExport, example: torch.Tensor, path: Path, batch: Any) -> None:
    torch.onnx.export(
        graph,
        (example,),
        str(path),
        input_names=[INPUT_NAME],
        output_names=list(OUTPUT_NAMES),
        dynamic_shapes=({0: batch},),
        opset_version=OPSET,
        dynamo=True,
        external_data=False,
        verbose=False,
    )


def onnx_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """A CPU ONNX Runtime session for `path`."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def max_differences(
    detector: Detector, session: ort.InferenceSession, images: np.ndarray, height: int, width: int
) -> dict[str, float]:
    """Largest |ONNX Runtime - torch| per output for one batch of images float32 [B,1,H,W].

    Scores are compared rank by rank (both are sorted descending). Boxes and classes are compared per detection
    after matching each ONNX detection to the torch detection of the same class with the nearest score and box:
    near-equal scores may swap ranks between runtimes, which is not a numerical difference.
    """
    graph = DetectorExport(detector, height, width).eval()
    with torch.no_grad():
        reference = [t.numpy() for t in graph(torch.from_numpy(images))]
    got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})
    ref = dict(zip(OUTPUT_NAMES, reference))
    out = dict(zip(OUTPUT_NAMES, got))
    diffs = {
        "scores": float(np.abs(out["scores"] - ref["scores"]).max()),
        "malignancy": float(np.abs(out["malignancy"] - ref["malignancy"]).max()),
        "quality": float(np.abs(out["quality"] - ref["quality"]).max()),
    }
    box_diff = 0.0
    unmatched = 0
    for b in range(images.shape[0]):
        for j in range(out["scores"].shape[1]):
            same = (ref["classes"][b] == out["classes"][b, j]) & (
                np.abs(ref["scores"][b] - out["scores"][b, j]) <= 1e-4
            )
            if not same.any():
                unmatched += 1
                continue
            candidates = np.abs(ref["boxes"][b][same] - out["boxes"][b, j]).max(axis=1)
            box_diff = max(box_diff, float(candidates.min()))
    diffs["boxes"] = box_diff
    diffs["unmatched_detections"] = float(unmatched)
    return diffs
