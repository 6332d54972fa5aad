"""Training and evaluation data for the detector: phantoms framed the way the transformer frames a mammogram.

numpy + OpenCV only (no torch), so evaluation tooling and tests can use it without the build extra.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
from rich.progress import Progress

from models.detector.phantom import make_phantom


@dataclass(frozen=True)
class Framed:
    """A batch of model inputs with their ground truth.

    images: float32 [N, H, W] in [0, 1], breast cropped and fitted top-left, zero padding right/bottom.
    boxes / labels: per image, float32 [n, 4] (x_min, y_min, x_max, y_max) in model-input pixels and int64 [n].
    quality: float32 [N], 1 = diagnostic.  malignant: float32 [N], 1 = any malignant lesion.
    """

    images: np.ndarray
    boxes: list[np.ndarray]
    labels: list[np.ndarray]
    quality: np.ndarray
    malignant: np.ndarray


def fit_to_input(
    image: np.ndarray, boxes: np.ndarray, breast_mask: np.ndarray, height: int, width: int, scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Crop the breast's bounding box and resize it to fit `height` x `width`, keeping the aspect ratio.

    The crop is pasted at the top-left corner and the rest is zero (air), as the transformer does. `scale` <= 1
    shrinks the fitted crop further (padding augmentation). Boxes go from pixels of `image` to pixels of the
    returned array. An empty mask (blank exposure) crops nothing.
    """
    rows, cols = np.nonzero(breast_mask.any(axis=1))[0], np.nonzero(breast_mask.any(axis=0))[0]
    if rows.size:
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    else:
        r0, r1, c0, c1 = 0, image.shape[0], 0, image.shape[1]
    crop = image[r0:r1, c0:c1]
    factor = min(height / crop.shape[0], width / crop.shape[1]) * scale
    out_h = min(max(round(crop.shape[0] * factor), 1), height)
    out_w = min(max(round(crop.shape[1] * factor), 1), width)
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    framed = np.zeros((height, width), np.float32)
    framed[:out_h, :out_w] = cv2.resize(crop, (out_w, out_h), interpolation=interpolation)
    sx, sy = out_w / crop.shape[1], out_h / crop.shape[0]
    moved = (boxes - np.array([c0, r0, c0, r0], np.float32)) * np.array([sx, sy, sx, sy], np.float32)
    return framed, moved.astype(np.float32)


def _one(
    args: tuple[int, int, int, int, int, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool, bool]:
    seed, gen_h, gen_w, height, width, scale = args
    phantom = make_phantom(seed, gen_h, gen_w)
    framed, boxes = fit_to_input(phantom.image, phantom.boxes, phantom.breast_mask, height, width, scale)
    return framed, boxes, phantom.labels, phantom.degraded, phantom.malignant


def make_framed(
    seed: int,
    count: int,
    height: int,
    width: int,
    *,
    oversample: float = 1.25,
    workers: int = 1,
    progress: Progress | None = None,
    description: str = "detector: phantoms",
) -> Framed:
    """`count` phantoms from seeds `seed * 1_000_003 + i`, generated `oversample` times larger then framed.

    Generating larger and downsampling mimics the transformer's downscale of a full-size mammogram.
    """
    gen_h, gen_w = round(height * oversample), round(width * oversample)
    jobs = [(seed * 1_000_003 + i, gen_h, gen_w, height, width, 1.0) for i in range(count)]
    task = progress.add_task(description, total=count) if progress is not None else None
    results = []
    # Forked workers: "spawn" would re-run the caller's __main__ (a script without a main guard recurses). The
    # children only run numpy, scipy.fft and OpenCV, never torch's OpenMP pool, so forking a torch process is safe.
    context = multiprocessing.get_context("fork")
    pool_or_none = (
        ProcessPoolExecutor(workers, mp_context=context) if workers > 1 else contextlib.nullcontext()
    )
    with pool_or_none as pool:
        mapped = pool.map(_one, jobs, chunksize=16) if pool is not None else map(_one, jobs)
        for result in mapped:
            results.append(result)
            if progress is not None and task is not None:
                progress.update(task, advance=1)
    return Framed(
        images=np.stack([r[0] for r in results]),
        boxes=[r[1] for r in results],
        labels=[r[2] for r in results],
        quality=np.array([not r[3] for r in results], np.float32),
        malignant=np.array([r[4] for r in results], np.float32),
    )
