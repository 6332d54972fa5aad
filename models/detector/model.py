"""CenterNet-style anchor-free detector with image-level quality and malignancy heads, and in-graph decoding.

Input `image` FP32 [B, 1, H, W] in [0, 1] (H, W multiples of 16). Dense outputs at stride 4: class heatmap
logits [B, 3, H/4, W/4], log box size [B, 2, ...] (in stride-4 cells), centre offset [B, 2, ...] (cells). The
exported graph (`DetectorExport`) decodes them: 3x3 max-pool peak extraction, top-K over classes x positions,
boxes (x_min, y_min, x_max, y_max) in model-input pixels.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

STRIDE = 4
NUM_CLASSES = 3
TOP_K = 100
# Fixed normalisation inside the graph (never per image: a flat, low-contrast image must stay flat).
_MEAN, _STD = 0.35, 0.2


class DenseOutputs(NamedTuple):
    heatmap: torch.Tensor  # [B, 3, h, w] logits
    size: torch.Tensor  # [B, 2, h, w] log(width, height) in cells
    offset: torch.Tensor  # [B, 2, h, w] sub-cell centre offset in cells
    malignancy: torch.Tensor  # [B, 1] logit
    quality: torch.Tensor  # [B, 1] logit


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class Detector(nn.Module):
    """Space-to-depth stem straight to stride 4, encoder to stride 32, top-down merge back to stride 4, dense
    heads, and two image-level heads.

    widths: channels of (stem, stride 4, stride 8, stride 16, stride 32).
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 80, 112), head: int = 32) -> None:
        super().__init__()
        w_stem, w4, w8, w16, w32 = widths
        # Pixel-unshuffle keeps every full-resolution pixel (one-pixel calcifications survive) while the first
        # convolution already runs at stride 4: full-resolution feature maps dominated the CPU training time.
        self.stem = nn.Sequential(nn.PixelUnshuffle(STRIDE), _conv(STRIDE * STRIDE, w_stem))
        self.s4 = nn.Sequential(_conv(w_stem, w4), _conv(w4, w4))
        self.s8 = nn.Sequential(_conv(w4, w8, 2), _conv(w8, w8))
        self.s16 = nn.Sequential(_conv(w8, w16, 2), _conv(w16, w16))
        self.s32 = nn.Sequential(_conv(w16, w32, 2), _conv(w32, w32))
        self.lat32 = nn.Conv2d(w32, head, 1)
        self.lat16 = nn.Conv2d(w16, head, 1)
        self.lat8 = nn.Conv2d(w8, head, 1)
        self.lat4 = nn.Conv2d(w4, head, 1)
        self.merge = _conv(head, head)
        self.heat = nn.Conv2d(head, NUM_CLASSES, 1)
        self.box = nn.Conv2d(head, 4, 1)
        # Image-level heads read pooled deep features plus statistics of the stem features (blur and noise live
        # at the finest scale) and the pooled heatmap (where the lesions are).
        pooled = 2 * w32 + 2 * w_stem + 2 * NUM_CLASSES
        self.image_head = nn.Sequential(nn.Linear(pooled, 64), nn.ReLU(inplace=True), nn.Linear(64, 2))
        nn.init.constant_(self.heat.bias, -4.0)  # CenterNet prior: most cells are background

    def forward(self, image: torch.Tensor) -> DenseOutputs:
        x = (image - _MEAN) / _STD
        stem = self.stem(x)
        f4 = self.s4(stem)
        f8 = self.s8(f4)
        f16 = self.s16(f8)
        f32 = self.s32(f16)
        p = self.lat32(f32)
        p = self.lat16(f16) + F.interpolate(p, size=f16.shape[-2:], mode="nearest")
        p = self.lat8(f8) + F.interpolate(p, size=f8.shape[-2:], mode="nearest")
        p = self.lat4(f4) + F.interpolate(p, size=f4.shape[-2:], mode="nearest")
        p = self.merge(p)
        heat = self.heat(p)
        box = self.box(p)
        pooled = torch.cat(
            [
                f32.mean(dim=(2, 3)),
                f32.amax(dim=(2, 3)),
                stem.mean(dim=(2, 3)),
                stem.std(dim=(2, 3)),
                heat.mean(dim=(2, 3)),
                heat.amax(dim=(2, 3)),
            ],
            dim=1,
        )
        logits = self.image_head(pooled)
        return DenseOutputs(heat, box[:, :2], box[:, 2:], logits[:, :1], logits[:, 1:])


def decode(outputs: DenseOutputs, height: int, width: int, k: int = TOP_K) -> tuple[torch.Tensor, ...]:
    """Peaks -> (boxes [B,K,4] pixels, scores [B,K], classes [B,K] int64, malignancy [B,1], quality [B,1])."""
    heat = torch.sigmoid(outputs.heatmap)
    batch, classes, rows, cols = heat.shape
    peaks = F.max_pool2d(heat, 3, stride=1, padding=1)
    heat = heat * (peaks == heat).to(heat.dtype)
    scores, index = torch.topk(heat.reshape(batch, classes * rows * cols), k, dim=1)
    cells = rows * cols
    cls = torch.div(index, cells, rounding_mode="floor")
    position = index - cls * cells
    ys = torch.div(position, cols, rounding_mode="floor")
    xs = position - ys * cols
    gather = position.unsqueeze(1).expand(batch, 2, k)
    size = torch.exp(torch.gather(outputs.size.reshape(batch, 2, cells), 2, gather)) * STRIDE
    offset = torch.gather(outputs.offset.reshape(batch, 2, cells), 2, gather)
    cx = (xs.to(heat.dtype) + offset[:, 0]) * STRIDE
    cy = (ys.to(heat.dtype) + offset[:, 1]) * STRIDE
    half_w, half_h = size[:, 0] / 2, size[:, 1] / 2
    boxes = torch.stack(
        [
            (cx - half_w).clamp(0, width),
            (cy - half_h).clamp(0, height),
            (cx + half_w).clamp(0, width),
            (cy + half_h).clamp(0, height),
        ],
        dim=2,
    )
    return boxes, scores, cls, torch.sigmoid(outputs.malignancy), torch.sigmoid(outputs.quality)


class DetectorExport(nn.Module):
    """The served graph: image [B,1,H,W] -> boxes, scores, classes, malignancy, quality."""

    def __init__(self, detector: Detector, height: int, width: int, k: int = TOP_K) -> None:
        super().__init__()
        self.detector, self.height, self.width, self.k = detector, height, width, k

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return decode(self.detector(image), self.height, self.width, self.k)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
