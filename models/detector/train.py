"""Training loop for the detector: CenterNet targets and losses, fixed seed and fixed step count."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from rich.progress import Progress
from torch.nn import functional as F

from models.detector.data import Framed
from models.detector.model import NUM_CLASSES, STRIDE, DenseOutputs, Detector


@dataclass(frozen=True)
class TrainConfig:
    """The training part of the recipe (see `models.detector.build.recipe`)."""

    seed: int
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_steps: int
    size_weight: float
    offset_weight: float
    quality_weight: float
    malignancy_weight: float
    shrink_probability: float  # share of samples shrunk further into the frame (extra zero padding)
    min_shrink: float

    @classmethod
    def from_recipe(cls, recipe: dict[str, Any]) -> TrainConfig:
        return cls(**{name: recipe[name] for name in cls.__dataclass_fields__})


def gaussian_targets(
    boxes: np.ndarray, labels: np.ndarray, rows: int, cols: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CenterNet targets on the stride-4 grid for one image.

    boxes: float32 [n, 4] in input pixels. Returns heat [3, rows, cols] (elliptical Gaussian peaks, 1 at each
    centre cell), size [2, rows, cols] (log width/height in cells), offset [2, rows, cols] (centre minus cell
    corner, cells) and mask [rows, cols] (1 at centre cells).
    """
    heat = np.zeros((NUM_CLASSES, rows, cols), np.float32)
    size = np.zeros((2, rows, cols), np.float32)
    offset = np.zeros((2, rows, cols), np.float32)
    mask = np.zeros((rows, cols), np.float32)
    ys, xs = np.arange(rows, dtype=np.float32)[:, None], np.arange(cols, dtype=np.float32)[None, :]
    for (x0, y0, x1, y1), label in zip(boxes / STRIDE, labels):
        w, h = max(x1 - x0, 0.25), max(y1 - y0, 0.25)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        ix, iy = min(int(cx), cols - 1), min(int(cy), rows - 1)
        # TTFNet-style elliptical Gaussian: sigma = 0.54 * side / 6, at least 0.5 cells.
        sx, sy = max(0.09 * w, 0.5), max(0.09 * h, 0.5)
        peak = np.exp(-((xs - ix) ** 2) / (2 * sx * sx) - ((ys - iy) ** 2) / (2 * sy * sy))
        np.maximum(heat[label], peak, out=heat[label])
        size[:, iy, ix] = np.log([w, h])
        offset[:, iy, ix] = (cx - ix, cy - iy)
        mask[iy, ix] = 1.0
    return heat, size, offset, mask


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced pixel-wise focal loss, normalised by the number of peaks."""
    prob = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1).float()
    negative_weight = torch.pow(1 - target, 4)
    pos_loss = -F.logsigmoid(logits) * torch.pow(1 - prob, 2) * positive
    neg_loss = -F.logsigmoid(-logits) * torch.pow(prob, 2) * negative_weight * (1 - positive)
    return (pos_loss.sum() + neg_loss.sum()) / positive.sum().clamp(min=1.0)


def _augment(
    data: Framed, index: np.ndarray, config: TrainConfig, rng: np.random.Generator
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Vertical flips (either breast side up) and extra zero padding (framing differences)."""
    _, height, width = data.images.shape
    images = data.images[index].copy()
    boxes, labels = [], []
    for slot, i in enumerate(index):
        b = data.boxes[i].copy()
        if rng.random() < config.shrink_probability:
            scale = rng.uniform(config.min_shrink, 1.0)
            h, w = round(height * scale), round(width * scale)
            small = cv2.resize(images[slot], (w, h), interpolation=cv2.INTER_AREA)
            images[slot] = 0.0
            images[slot, :h, :w] = small
            b = b * np.array([w / width, h / height, w / width, h / height], np.float32)
        if rng.random() < 0.5:
            # Flip only the breast's rows: the padding stays at the bottom, as the transformer frames it.
            filled = int(np.count_nonzero(images[slot].any(axis=1)))
            rows = max(filled, int(np.ceil(b[:, 3].max())) if len(b) else 0)
            images[slot, :rows] = images[slot, :rows][::-1]
            b = b[:, [0, 3, 2, 1]] * np.array([1, -1, 1, -1], np.float32) + np.array(
                [0, rows, 0, rows], np.float32
            )
        boxes.append(b)
        labels.append(data.labels[i])
    return images, boxes, labels


def losses(
    outputs: DenseOutputs,
    targets: tuple[torch.Tensor, ...],
    quality: torch.Tensor,
    malignant: torch.Tensor,
    config: TrainConfig,
) -> dict[str, torch.Tensor]:
    """Weighted loss terms; `total` is what gets minimised."""
    heat, size, offset, mask = targets
    n_peaks = mask.sum().clamp(min=1.0)
    centre = mask.unsqueeze(1)
    terms = {
        "heat": focal_loss(outputs.heatmap, heat),
        "size": (F.l1_loss(outputs.size, size, reduction="none") * centre).sum() / n_peaks,
        "offset": (F.l1_loss(outputs.offset, offset, reduction="none") * centre).sum() / n_peaks,
        "quality": F.binary_cross_entropy_with_logits(outputs.quality[:, 0], quality),
        "malignancy": F.binary_cross_entropy_with_logits(outputs.malignancy[:, 0], malignant),
    }
    terms["total"] = (
        terms["heat"]
        + config.size_weight * terms["size"]
        + config.offset_weight * terms["offset"]
        + config.quality_weight * terms["quality"]
        + config.malignancy_weight * terms["malignancy"]
    )
    return terms


def train(model: Detector, data: Framed, config: TrainConfig, progress: Progress) -> list[dict[str, float]]:
    """Train in place for `config.steps` steps; returns the loss terms averaged over each tenth of the run."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    def schedule(step: int) -> float:  # linear warm-up, then cosine decay to 2% of the peak rate
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        done = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * done))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    _, height, width = data.images.shape
    rows, cols = height // STRIDE, width // STRIDE
    history: list[dict[str, float]] = []
    window: list[dict[str, float]] = []
    task = progress.add_task("detector: training", total=config.steps)
    model.train()
    for step in range(config.steps):
        index = rng.choice(len(data.images), config.batch_size, replace=False)
        images, boxes, labels = _augment(data, index, config, rng)
        per_image = [gaussian_targets(b, lab, rows, cols) for b, lab in zip(boxes, labels)]
        targets = tuple(torch.from_numpy(np.stack(parts)) for parts in zip(*per_image))
        outputs = model(torch.from_numpy(images).unsqueeze(1))
        terms = losses(
            outputs,
            targets,
            torch.from_numpy(data.quality[index]),
            torch.from_numpy(data.malignant[index]),
            config,
        )
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        scheduler.step()
        window.append({name: float(value.detach()) for name, value in terms.items()})
        loss_value = window[-1]["total"]
        if len(window) >= max(config.steps // 10, 1) or step == config.steps - 1:
            history.append({name: float(np.mean([w[name] for w in window])) for name in window[0]})
            window = []
        progress.update(task, advance=1, description=f"detector: training (loss {loss_value:.3f})")
    model.eval()
    return history
