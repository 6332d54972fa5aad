"""From the detector's fixed-size outputs to a study's findings: thresholds, NMS, quality gating and risk.

Study risk (the `risk` output), a probability that the study shows a malignancy:
- only diagnostic images count (quality >= the quality threshold);
- per breast, the largest malignancy probability of its diagnostic views (CC and MLO of one breast see the same
  lesions, so their probabilities are not independent evidence and are not combined);
- across breasts, noisy-OR: risk = 1 - prod_b (1 - p_b), as the two breasts are independent organs.
Images of unknown laterality ("U") each count as a breast of their own and images of both breasts ("B") as one
more: with unknown pairing, treating views as independent can only raise the risk (the conservative side).

That combination ranks studies but is not a frequency: the shipped detector's `calibration.json` (beside the model,
found like `thresholds.json`) maps it to one by Platt scaling, risk = sigmoid(slope * logit(raw) + intercept),
fitted on a calibration split of synthetic studies. A calibrated risk of 0.3 means that about 3 in 10 studies
given that risk show a malignant mass on a diagnostic view (on the phantom distribution it was fitted on; it says
nothing about patients). Without the file (a team's own ONNX) the raw combination is returned and
`StudyFindings.risk_calibrated` is False.

Findings of non-diagnostic images are dropped: the image is flagged (its `quality` and the `diagnostic` flag in
the response parameters) and contributes neither boxes nor risk. A study without any diagnostic image is a 422.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PredictorError, Unprocessable
from .preparation import PreparedImage


@dataclass(frozen=True)
class Thresholds:
    """Post-processing thresholds (probabilities, and an IoU for NMS)."""

    score: float
    nms_iou: float
    quality: float


CALIBRATION_FILE = "calibration.json"
# Raw risks are clipped this far from 0 and 1 before the logit (a noisy-OR of confident views reaches 1.0 in FP32).
_LOGIT_EPSILON = 1e-6


@dataclass(frozen=True)
class RiskCalibration:
    """Platt scaling of the study risk: calibrated = sigmoid(slope * logit(raw) + intercept), raw clipped to
    [1e-6, 1 - 1e-6]. Monotone (slope > 0), so it changes no ranking (ROC AUC) and no finding."""

    slope: float
    intercept: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.slope) and math.isfinite(self.intercept)) or self.slope <= 0:
            raise ValueError(f"a risk calibration needs a finite slope > 0 and a finite intercept, got "
                             f"slope {self.slope!r}, intercept {self.intercept!r}")

    def apply(self, raw: float | np.ndarray) -> float | np.ndarray:
        """The calibrated probability of a raw study risk (scalar or array)."""
        clipped = np.clip(np.asarray(raw, dtype=np.float64), _LOGIT_EPSILON, 1.0 - _LOGIT_EPSILON)
        logit = np.log(clipped) - np.log1p(-clipped)
        calibrated = 1.0 / (1.0 + np.exp(-(self.slope * logit + self.intercept)))
        return float(calibrated) if np.ndim(calibrated) == 0 else calibrated

    def to_json(self, **extra: Any) -> dict[str, Any]:
        """The `calibration.json` document (`extra`: provenance such as the split it was fitted on)."""
        return {"method": "platt", "applies_to": "study_risk", "slope": self.slope, "intercept": self.intercept,
                **extra}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> RiskCalibration:
        if document.get("method") != "platt":
            raise ValueError(f"unsupported risk calibration method {document.get('method')!r} (expected 'platt')")
        return cls(slope=float(document["slope"]), intercept=float(document["intercept"]))


def load_calibration(folder: Path) -> RiskCalibration | None:
    """The model folder's `calibration.json`, or None when it has none. A file that cannot be read as a Platt
    calibration raises ValueError (a broken side file must not silently serve uncalibrated risks)."""
    path = Path(folder) / CALIBRATION_FILE
    if not path.exists():
        return None
    try:
        return RiskCalibration.from_json(json.loads(path.read_text()))
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path.name} is not a risk calibration: {type(error).__name__}: {error}") from None


@dataclass(frozen=True)
class StudyFindings:
    """The findings of a study, in original stored pixels, ordered by image then by decreasing score."""

    boxes: np.ndarray  # float32 [m, 4] (x_min, y_min, x_max, y_max), stored pixels of image `image_index`
    scores: np.ndarray  # float32 [m]
    labels: list[str]  # [m] class names
    image_index: np.ndarray  # int32 [m], index of the image in the request
    quality: np.ndarray  # float32 [n], P(diagnostic) per image
    diagnostic: list[bool]  # [n], quality >= threshold
    malignancy: np.ndarray  # float32 [n], per-image malignancy probability
    risk: float  # study-level malignancy probability (module docstring), calibrated when `risk_calibrated`
    raw_risk: float = float("nan")  # the combination before calibration
    risk_calibrated: bool = False


def pairwise_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box [4] with each of boxes [n, 4] (x_min, y_min, x_max, y_max; empty boxes have IoU 0)."""
    width = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    intersection = width * height
    area = max(box[2] - box[0], 0) * max(box[3] - box[1], 0)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    union = area + areas - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection, dtype=np.float64), where=union > 0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy class-agnostic non-maximum suppression.

    Returns the indices of the kept boxes, by decreasing score: a box is dropped when its IoU with a kept,
    higher-scoring box exceeds `iou_threshold`. Ties in score keep the earlier box.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        order = rest[pairwise_iou(boxes[best], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def study_risk(malignancy: Sequence[float], laterality: Sequence[str], diagnostic: Sequence[bool]) -> float:
    """Study-level malignancy probability: max per breast over diagnostic views, noisy-OR across breasts.

    Raises ValueError when no image is diagnostic (the caller answers 422 before that).
    """
    per_breast: dict[str, float] = {}
    for index, (probability, side, usable) in enumerate(zip(malignancy, laterality, diagnostic)):
        if not usable:
            continue
        key = side if side in ("L", "R", "B") else f"U{index}"
        per_breast[key] = max(per_breast.get(key, 0.0), float(np.clip(probability, 0.0, 1.0)))
    if not per_breast:
        raise ValueError("no diagnostic image")
    return float(1.0 - np.prod([1.0 - p for p in per_breast.values()]))


def collect_findings(
    outputs: Mapping[str, np.ndarray],
    prepared: Sequence[PreparedImage],
    class_names: Sequence[str],
    thresholds: Thresholds,
    calibration: RiskCalibration | None = None,
) -> StudyFindings:
    """Apply quality gating, the score threshold and NMS per image, map boxes to stored pixels, and combine the
    study risk (calibrated by `calibration` when given).

    outputs: the detector's batch, `boxes` [n, K, 4] (model pixels), `scores` [n, K], `classes` [n, K],
        `malignancy` [n, 1], `quality` [n, 1], in the order of `prepared`.
    """
    count = len(prepared)
    quality = np.asarray(outputs["quality"], dtype=np.float32).reshape(count, -1)[:, 0]
    malignancy = np.asarray(outputs["malignancy"], dtype=np.float32).reshape(count, -1)[:, 0]
    diagnostic = [bool(q >= thresholds.quality) for q in quality]
    if not any(diagnostic):
        listed = ", ".join(f"image {item.image.index}: {q:.2f}" for item, q in zip(prepared, quality))
        raise Unprocessable(
            f"no diagnostic image in the study: every image's quality is below the threshold "
            f"{thresholds.quality:g} ({listed})"
        )
    all_boxes, all_scores, all_labels, all_index = [], [], [], []
    for position, item in enumerate(prepared):
        if not diagnostic[position]:
            continue
        boxes = np.asarray(outputs["boxes"][position], dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(outputs["scores"][position], dtype=np.float64).reshape(-1)
        classes = np.asarray(outputs["classes"][position]).reshape(-1).astype(np.int64)
        candidates = np.flatnonzero(scores >= thresholds.score)
        kept = candidates[nms(boxes[candidates], scores[candidates], thresholds.nms_iou)]
        stored = item.transform.to_stored(boxes[kept])
        nonempty = (stored[:, 2] > stored[:, 0]) & (stored[:, 3] > stored[:, 1])
        kept, stored = kept[nonempty], stored[nonempty]
        for class_id in classes[kept]:
            if not 0 <= class_id < len(class_names):
                raise PredictorError(
                    f"the detector returned class id {class_id}; its labels.txt names {len(class_names)} classes"
                )
            all_labels.append(class_names[class_id])
        all_boxes.append(stored)
        all_scores.append(scores[kept])
        all_index.append(np.full(len(kept), item.image.index))
    laterality = [item.image.laterality for item in prepared]
    raw_risk = study_risk(malignancy, laterality, diagnostic)
    return StudyFindings(
        boxes=np.concatenate(all_boxes).astype(np.float32).reshape(-1, 4),
        scores=np.concatenate(all_scores).astype(np.float32),
        labels=all_labels,
        image_index=np.concatenate(all_index).astype(np.int32),
        quality=quality,
        diagnostic=diagnostic,
        malignancy=malignancy,
        risk=raw_risk if calibration is None else float(calibration.apply(raw_risk)),
        raw_risk=raw_risk,
        risk_calibrated=calibration is not None,
    )
