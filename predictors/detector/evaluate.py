"""Held-out metrics for the detector: mAP@0.5 per class, malignancy ROC AUC, quality accuracy (numpy, sklearn)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from rich.progress import Progress
from sklearn.metrics import roc_auc_score

from predictors.detector.data import Framed
from predictors.detector.phantom import CLASS_NAMES

# Detector outputs for a batch: boxes [B,K,4] (input pixels), scores [B,K], classes [B,K], malignancy [B,1],
# quality [B,1].
Outputs = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box [4] against boxes [n, 4], all (x_min, y_min, x_max, y_max)."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best = order[0]
        keep.append(int(best))
        order = order[1:][iou(boxes[best], boxes[order[1:]]) <= threshold]
    return np.array(keep, np.int64)


def average_precision(
    detections: list[tuple[np.ndarray, np.ndarray]], truths: list[np.ndarray], iou_threshold: float = 0.5
) -> float:
    """All-point interpolated AP (VOC 2010+) of one class over a set of images.

    detections[i] = (boxes [m, 4], scores [m]) and truths[i] = boxes [n, 4] for image i. NaN when no truths.
    """
    total = sum(len(t) for t in truths)
    if total == 0:
        return float("nan")
    records: list[tuple[float, int, int]] = []  # (score, image, detection index)
    for image, (_, scores) in enumerate(detections):
        records.extend((float(s), image, j) for j, s in enumerate(scores))
    records.sort(key=lambda r: -r[0])
    matched = [np.zeros(len(t), bool) for t in truths]
    hits = np.zeros(len(records))
    for rank, (_, image, j) in enumerate(records):
        gt = truths[image]
        if len(gt) == 0:
            continue
        overlaps = iou(detections[image][0][j], gt)
        best = int(np.argmax(overlaps))
        if overlaps[best] >= iou_threshold and not matched[image][best]:
            matched[image][best] = True
            hits[rank] = 1
    tp = np.cumsum(hits)
    recall = tp / total
    precision = tp / np.arange(1, len(records) + 1)
    # Precision envelope, then the area under the stepwise recall curve.
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.nonzero(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def detection_map(
    outputs: Outputs, truth_boxes: list[np.ndarray], truth_labels: list[np.ndarray], nms_iou: float | None
) -> dict[str, float]:
    """AP@0.5 per class and their mean; optional class-wise NMS as the transformer applies it."""
    boxes, scores, classes = outputs[0], outputs[1], outputs[2]
    result: dict[str, float] = {}
    for cls, name in enumerate(CLASS_NAMES):
        dets, gts = [], []
        for i in range(len(boxes)):
            pick = classes[i] == cls
            b, s = boxes[i][pick], scores[i][pick]
            if nms_iou is not None and len(s):
                keep = nms(b, s, nms_iou)
                b, s = b[keep], s[keep]
            dets.append((b, s))
            gts.append(truth_boxes[i][truth_labels[i] == cls])
        result[f"ap50_{name}"] = average_precision(dets, gts)
    result["map50"] = float(np.nanmean([result[f"ap50_{name}"] for name in CLASS_NAMES]))
    return result


def _auc(truth: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC, NaN when only one class is present (tiny smoke-test sets)."""
    if len(np.unique(truth)) < 2:
        return float("nan")
    return float(roc_auc_score(truth, score))


def evaluate(
    predict: Callable[[np.ndarray], Outputs],
    data: Framed,
    progress: Progress,
    *,
    batch_size: int = 16,
    nms_iou: float | None = 0.5,
    quality_threshold: float = 0.5,
) -> dict[str, Any]:
    """Run `predict` (images float32 [B,1,H,W] -> Outputs) over `data` and measure everything.

    Detection and malignancy are reported on the diagnostic images (the transformer only scores those) and on
    all images; quality accuracy is over all images.
    """
    parts: list[Outputs] = []
    task = progress.add_task("detector: evaluating", total=len(data.images))
    for start in range(0, len(data.images), batch_size):
        batch = data.images[start : start + batch_size, None]
        parts.append(tuple(np.asarray(x) for x in predict(batch)))  # type: ignore[arg-type]
        progress.update(task, advance=len(batch))
    outputs: Outputs = tuple(np.concatenate(column) for column in zip(*parts))  # type: ignore[assignment]
    diagnostic = data.quality == 1
    keep = np.nonzero(diagnostic)[0]

    def subset(idx: np.ndarray) -> Outputs:
        return tuple(o[idx] for o in outputs)  # type: ignore[return-value]

    metrics: dict[str, Any] = {"images": len(data.images), "diagnostic_images": int(diagnostic.sum())}
    metrics.update(
        detection_map(subset(keep), [data.boxes[i] for i in keep], [data.labels[i] for i in keep], nms_iou)
    )
    all_images = detection_map(outputs, data.boxes, data.labels, nms_iou)
    metrics.update({f"{name}_all_images": value for name, value in all_images.items()})
    malignancy, quality = outputs[3][:, 0], outputs[4][:, 0]
    metrics["malignancy_auc"] = _auc(data.malignant[keep], malignancy[keep])
    metrics["malignancy_auc_all_images"] = _auc(data.malignant, malignancy)
    metrics["quality_accuracy"] = float(np.mean((quality >= quality_threshold) == diagnostic))
    metrics["quality_auc"] = _auc(diagnostic, quality)
    return metrics
