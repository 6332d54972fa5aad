"""Reproducible build of `mammo_detector`: phantoms -> training -> ONNX -> verification -> card.

`recipe()` is everything that determines the model (hashed by the orchestrator's cache); `build()` writes the
Triton model folder's artifacts (never `config.pbtxt`, which is committed). The held-out metrics and the study-risk
calibration are not measured here: `models` never imports the transformer, and the card reports the model as
served, so `evaluation.served.evaluate_detector` (run by `duet models build` after this build) measures them
through the transformer's decoding and post-processing and completes the card. `recipe["served_evaluation"]`
describes its splits.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress

from models.cards import package_versions, write_card
from models.detector.data import Framed, fit_to_input, make_framed
from models.detector.export import (
    INPUT_NAME,
    OPSET,
    OUTPUT_NAMES,
    export_onnx,
    max_differences,
    onnx_session,
)
from models.detector.model import STRIDE, TOP_K, Detector, count_parameters
from models.detector.phantom import CLASS_NAMES, make_phantom
from models.detector.train import TrainConfig, train

MODEL_NAME = "mammo_detector"
NO_CLINICAL_VALIDITY = (
    "NO CLINICAL VALIDITY: trained and evaluated on synthetic phantoms only; it proves the serving pipeline, "
    "not a diagnosis. Real deployments bring their own ONNX that meets the predictor contract."
)
VERIFY_BATCHES = (1, 3, 8)
VERIFY_TOLERANCE = 1e-4


def recipe(quick: bool = False) -> dict[str, Any]:
    """Everything that determines the built model (JSON-serialisable). `quick` is a seconds-long smoke build."""
    full: dict[str, Any] = {
        "model": MODEL_NAME,
        "seed": 0,
        # Phantoms for the ONNX Runtime vs torch check (and the warmup image, seed block + 1): a block of int seeds
        # apart from training's. Held-out metrics come from the served evaluation (`served_evaluation`).
        "verify_seed": 7919,
        "verify_images": 8,
        "input_height": 256,
        "input_width": 208,
        "oversample": 1.25,  # phantoms drawn 1.25x larger, then cropped and downscaled like a real mammogram
        "train_images": 2000,
        "widths": [16, 32, 64, 80, 112],
        "head_channels": 32,
        "top_k": TOP_K,
        "steps": 2000,
        "batch_size": 16,
        "lr": 2e-3,
        "weight_decay": 1e-4,
        "warmup_steps": 50,
        "size_weight": 1.0,
        "offset_weight": 1.0,
        "quality_weight": 1.0,
        "malignancy_weight": 1.0,
        "shrink_probability": 0.3,
        "min_shrink": 0.8,
        "threads": 2,
        "score_threshold": 0.3,
        "quality_threshold": 0.5,
        "nms_iou": 0.5,
        # Synthetic DICOM studies of 1-4 views run through the served pipeline (`evaluation.served`): a
        # calibration split (seed space CALIBRATION) for the study risk's Platt scaling and a held-out split
        # (seed space HELD_OUT) for every reported metric, on both JPEG 2000 decoding paths.
        "served_evaluation": {
            "rows": 1024,
            "columns": 832,
            "calibration_seed": 0,
            "calibration_studies": 400,
            "calibration_syntax": "explicit",
            "held_out_seed": 0,
            "held_out_studies": 200,
            "held_out_syntax": "j2k",
            "workers": 2,
        },
    }
    if quick:
        full.update(train_images=32, steps=24, batch_size=4, warmup_steps=4)
        full["served_evaluation"] = {**full["served_evaluation"], "calibration_studies": 16,
                                     "held_out_studies": 8, "workers": 1}
    return full


def _warmup_image(height: int, width: int, seed: int) -> np.ndarray:
    """One realistic diagnostic phantom with lesions, framed as the transformer frames it: float32 [1, H, W]."""
    phantom = make_phantom(seed, int(height * 1.25), int(width * 1.25), n_lesions=2, degraded=False)
    framed, _ = fit_to_input(phantom.image, phantom.boxes, phantom.breast_mask, height, width)
    return framed[None]


def _verify(
    detector: Detector, model_path: Path, data: Framed, height: int, width: int, threads: int
) -> dict[str, dict[str, float]]:
    """ONNX Runtime vs torch at batch 1, 3 and 8; raises when any output differs by more than 1e-4."""
    session = onnx_session(model_path, threads)
    report: dict[str, dict[str, float]] = {}
    for batch in VERIFY_BATCHES:
        images = np.ascontiguousarray(data.images[:batch, None])
        diffs = max_differences(detector, session, images, height, width)
        report[str(batch)] = diffs
        worst = max(diffs[name] for name in ("scores", "boxes", "malignancy", "quality"))
        if worst > VERIFY_TOLERANCE or diffs["unmatched_detections"] > 0:
            raise RuntimeError(f"ONNX Runtime disagrees with torch at batch {batch}: {diffs}")
    return report


def _readme(recipe: dict[str, Any], metrics: dict[str, Any]) -> str:
    return f"""# {MODEL_NAME}

**{NO_CLINICAL_VALIDITY}**

A CenterNet-style anchor-free detector ({metrics["params"]:,} parameters): stride-{STRIDE} heatmaps for
{", ".join(CLASS_NAMES)}, box size and offset regression, 3x3 max-pool peak extraction and top-{recipe["top_k"]}
decoding inside the graph, plus image-level quality (P(diagnostic)) and malignancy (P(any malignant lesion)) heads.

- Input `{INPUT_NAME}` FP32 [B, 1, {recipe["input_height"]}, {recipe["input_width"]}], values in [0, 1] (0 = air),
  the breast's bounding box fitted top-left with aspect kept, chest wall at the left, zero padding right/bottom.
- Outputs {", ".join(f"`{name}`" for name in OUTPUT_NAMES)}; boxes (x_min, y_min, x_max, y_max) in input pixels.
- ONNX opset {OPSET}, dynamic batch axis; ONNX Runtime matches torch within {VERIFY_TOLERANCE} at batch
  {", ".join(map(str, VERIFY_BATCHES))} (checked in the build).

## Data

Synthetic phantoms from `models.detector.phantom` (power-law tissue texture, spiculated masses = malignant,
smooth ovals = benign, micro-dot clusters = calcification; half of the images impaired by blur, noise or low
contrast of graded severity, non-diagnostic from severity 0.5 on, or blank). Training: {recipe["train_images"]}
phantoms from seed {recipe["seed"]}.

Training: {recipe["steps"]} steps of batch {recipe["batch_size"]}, AdamW lr {recipe["lr"]}, seed {recipe["seed"]},
{metrics["train_seconds"]:.0f} s on {recipe["threads"]} CPU threads (build total {metrics["build_seconds"]:.0f} s).
Suggested thresholds (`thresholds.json`): score {recipe["score_threshold"]}, quality {recipe["quality_threshold"]},
class-agnostic NMS IoU {recipe["nms_iou"]} (the transformer's post-processing).

## Metrics

Not measured by this build alone: `evaluation.served` measures the model through the served pipeline (run by
`duet models build`).
"""


def build(model_dir: Path, recipe: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Train, export and verify the detector into `model_dir`; returns the build's metrics (size, seconds).

    Writes `1/model.onnx`, `labels.txt`, `thresholds.json`, `warmup/image` (raw little-endian FP32 [1, H, W])
    and the card (`card.json`, `README.md`). Leaves `config.pbtxt` alone. Raises RuntimeError when ONNX Runtime
    and torch disagree.
    """
    started = time.perf_counter()
    model_dir = Path(model_dir)
    height, width = int(recipe["input_height"]), int(recipe["input_width"])
    if height % 16 or width % 16:
        raise ValueError(f"input height and width must be multiples of 16, got {height}x{width}")
    threads = int(recipe["threads"])
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(recipe["seed"])
        train_data = make_framed(
            recipe["seed"], recipe["train_images"], height, width, oversample=recipe["oversample"],
            workers=threads, progress=progress, description="detector: training phantoms",
        )  # fmt: skip
        verify_data = make_framed(
            recipe["verify_seed"], recipe["verify_images"], height, width, oversample=recipe["oversample"],
            workers=threads, progress=progress, description="detector: verification phantoms",
        )  # fmt: skip
        detector = Detector(tuple(recipe["widths"]), recipe["head_channels"])
        train_started = time.perf_counter()
        history = train(detector, train_data, TrainConfig.from_recipe(recipe), progress)
        train_seconds = time.perf_counter() - train_started
        detector.eval()

        model_path = model_dir / "1" / "model.onnx"
        export_onnx(detector, model_path, height, width)
        verification = _verify(detector, model_path, verify_data, height, width, threads)
    finally:
        torch.set_num_threads(previous_threads)

    (model_dir / "labels.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    thresholds = {
        "score": recipe["score_threshold"],
        "quality": recipe["quality_threshold"],
        "nms_iou": recipe["nms_iou"],
    }
    (model_dir / "thresholds.json").write_text(json.dumps(thresholds, indent=2) + "\n")
    (model_dir / "warmup").mkdir(parents=True, exist_ok=True)
    warmup = _warmup_image(height, width, recipe["verify_seed"] + 1)
    (model_dir / "warmup" / "image").write_bytes(warmup.astype("<f4").tobytes())

    metrics: dict[str, Any] = {
        "params": count_parameters(detector),
        "train_seconds": round(train_seconds, 1),
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    card = {
        "name": MODEL_NAME,
        "description": "CenterNet-style lesion detector with quality and malignancy heads, trained on phantoms.",
        "clinical_validity": NO_CLINICAL_VALIDITY,
        "data": {
            "generator": "models.detector.phantom.make_phantom",
            "classes": list(CLASS_NAMES),
            "train": {"seed": recipe["seed"], "images": recipe["train_images"]},
            "verification": {"seed": recipe["verify_seed"], "images": recipe["verify_images"]},
            "framing": "breast bounding box fitted top-left, aspect kept, zero padding right/bottom",
            "oversample": recipe["oversample"],
        },
        "recipe": recipe,
        "seed": recipe["seed"],
        "contract": {
            "inputs": {INPUT_NAME: ["FP32", [-1, 1, height, width]]},
            "outputs": {
                "boxes": ["FP32", [-1, TOP_K, 4]],
                "scores": ["FP32", [-1, TOP_K]],
                "classes": ["INT64", [-1, TOP_K]],
                "malignancy": ["FP32", [-1, 1]],
                "quality": ["FP32", [-1, 1]],
            },
            "box_format": "x_min, y_min, x_max, y_max in model-input pixels",
        },
        "onnx_opset": OPSET,
        "verification": {"tolerance": VERIFY_TOLERANCE, "max_abs_diff_by_batch": verification},
        "training_loss": history,
        "thresholds": thresholds,
        "metrics": metrics,
        "packages": package_versions(
            ["torch", "onnx", "onnxruntime", "numpy", "scipy", "opencv-python-headless", "scikit-learn"]
        ),
    }
    write_card(model_dir, card, _readme(recipe, metrics))
    return metrics
