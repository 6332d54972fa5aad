"""Detection metric helpers (numpy only): IoU and all-point interpolated AP@IoU.

The detector's held-out metrics are measured through the served pipeline (`evaluation.served`), whose one NMS is
the transformer's (`transformers_pre.dicom.findings.nms`); this module only scores the detections it is given.
"""

from __future__ import annotations

import numpy as np


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
