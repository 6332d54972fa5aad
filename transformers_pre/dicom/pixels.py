"""One view's pixel pipeline: decode, window, crop, orient and resize one image for the detector (pure: it
runs in a worker thread or process, `pools.py`).

Per syntax, the cheapest path its bytes allow (`prepare_pixels`):
- JPEG 2000 / HTJ2K: the codestream's main header is checked against the DICOM header, then only the
  resolution levels the model needs are decoded (Pillow, see `jpeg2000`), unless
  `DicomSettings.resolution_aware` is off;
- baseline JPEG: libjpeg's scaled DCT decode (`jpeg`), likewise;
- native little endian: the pixels are a numpy view of the request's bytes (no copy); a strided preview finds
  the breast, then the crop's stored values are averaged over 2^r x 2^r blocks (r as for JPEG 2000: the
  coarsest level that keeps the crop at least the model size) and only those means go through the lookup
  table;
- the rest (JPEG-LS, RLE, big endian, deflated): pydicom's decoder, then the same block-mean,
  crop-before-window pass. With `resolution_aware` off, every syntax windows its full-resolution crop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit

from ..blob import Blob
from ..errors import BadRequest
from .decode import (
    JPEG2000_SYNTAXES,
    check_codestream,
    decode_pixels,
    encapsulated_frame,
    locate_pixel_data,
    native_pixels,
)
from .geometry import (
    ViewTransform,
    align,
    coarsest_reduction,
    fit_crop,
    on_grid,
    plan_view,
    preview_step,
    render,
)
from .intake import ImageHeader
from .jpeg import MAX_REDUCTION, ScaledGrid, check_jpeg, decode_scaled
from .jpeg2000 import ReducedGrid, decode_reduced
from .window import (
    WindowTable,
    apply_table,
    build_table,
    canonical_range,
    canonical_table,
    stored_range,
    voi_kind,
    within_bits_stored,
)

NATIVE_IN_PLACE = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian})


def chest_wall_hint(ds: Dataset, laterality: str) -> bool | None:
    """What the header says about the chest wall being on the right (None when it says nothing).

    PatientOrientation's first value is the direction of increasing column index: "A" (towards anterior, so
    the chest wall is on the left) or "P" (chest wall on the right). Without it, the usual hanging convention:
    right breasts are stored chest wall right.
    """
    orientation = ds.get("PatientOrientation", None)
    if orientation:
        first = str(orientation[0] if not isinstance(orientation, str) else orientation).strip().upper()
        if first.startswith("A"):
            return False
        if first.startswith("P"):
            return True
    if laterality in ("L", "R"):
        return laterality == "R"
    return None


@dataclass(frozen=True)
class ViewPixels:
    """The pixel work's result for one image, with the seconds each stage took."""

    pixels: np.ndarray  # float32 [H, W] in [0, 1]
    transform: ViewTransform
    voi: str
    seconds: dict[str, float]  # "decode", "window", "resize"


def prepare_pixels(
    blob: Blob, header: ImageHeader, laterality: str, model_hw: tuple[int, int], resolution_aware: bool = True
) -> ViewPixels:
    """Decode, window, crop, orient and resize one image (pure; runs in a worker thread or process).

    resolution_aware: for JPEG 2000 / HTJ2K, decode only the wavelet levels the model needs (see the module
    docstring); False decodes them at full resolution.
    """
    started = time.perf_counter()
    hint = chest_wall_hint(header.dataset, laterality)
    syntax = header.transfer_syntax
    if syntax in JPEG2000_SYNTAXES:
        element = locate_pixel_data(blob, syntax, header.index, forced=header.forced)
        frame = encapsulated_frame(blob, element, header.index, header.frames)
        codestream = check_codestream(frame, header.rows, header.columns, header.bits_allocated,
                                      header.bits_stored, header.signed, header.index)
        if resolution_aware:
            dtype = np.dtype(f"{'int' if header.signed else 'uint'}{header.bits_allocated}")
            reduced = _prepare_reduced(
                lambda level: decode_reduced(frame, codestream, level, dtype, header.index), codestream.grid,
                codestream.levels, header, hint, model_hw, started)
            if reduced is not None:
                return reduced
    elif syntax == JPEGBaseline8Bit and resolution_aware:
        element = locate_pixel_data(blob, syntax, header.index, forced=header.forced)
        frame = encapsulated_frame(blob, element, header.index, header.frames)
        check_jpeg(frame, header.rows, header.columns, header.bits_stored, header.index)
        scaled = _prepare_reduced(
            lambda level: decode_scaled(frame, level, header.rows, header.columns, header.index),
            lambda level: ScaledGrid(1 << level), MAX_REDUCTION, header, hint, model_hw, started)
        if scaled is not None:
            return scaled
    elif syntax in NATIVE_IN_PLACE:
        element = locate_pixel_data(blob, syntax, header.index, forced=header.forced)
        raw = native_pixels(blob, element, header.rows, header.columns, header.bits_allocated, header.signed,
                            header.index)
        # Raw bit patterns: the table folds away bits above BitsStored, but block means need them clear, and
        # the fallback window needs the true range; with such bits set, block means are skipped (the
        # full-resolution crop goes through the table) and a fallback window is left to pydicom's decoder,
        # which masks them.
        kind = voi_kind(header.dataset)
        present = canonical_range(raw, header.bits_stored, header.signed) if kind == "fallback" else None
        if kind != "fallback" or present is not None:
            clean = present is not None or (
                resolution_aware and within_bits_stored(raw, header.bits_stored, header.signed))
            window = canonical_table(build_table(header.dataset, stored_range=present), header.bits_stored,
                                     header.signed)
            return _finish(raw, window, hint, model_hw, started, time.perf_counter(),
                           resolution_aware and clean)
    stored = decode_pixels(blob, syntax, header.index, forced=header.forced)
    decoded = time.perf_counter()
    kind = voi_kind(header.dataset)
    window = build_table(header.dataset, stored_range=stored_range(stored) if kind == "fallback" else None)
    return _finish(stored, window, hint, model_hw, started, decoded, resolution_aware)


def _finish(stored: np.ndarray, window: WindowTable, hint: bool | None, model_hw: tuple[int, int],
            started: float, decoded: float, reduce: bool) -> ViewPixels:
    """Window a strided preview and plan the crop on it; then window only the crop and render.

    reduce: first average the crop's stored values over 2^r x 2^r blocks (OpenCV's exact integer area path), r
    the coarsest level that keeps the crop at least the model's size, as the JPEG 2000 path gets from the
    codestream's LL band; the window then sees 4^r times fewer pixels.
    """
    step = preview_step(stored.shape)
    preview = apply_table(stored[::step, ::step], window)
    transform = plan_view(preview, step, stored.shape, model_hw, hint)
    x0, y0, x1, y1 = transform.crop
    factor = 1 << coarsest_reduction(x1 - x0, y1 - y0, model_hw) if reduce else 1
    if factor == 1:
        return _render(stored, window, transform, model_hw, started, decoded)
    rows, columns = stored.shape
    x0, x1 = align(x0, x1, columns, factor)
    y0, y1 = align(y0, y1, rows, factor)
    means = cv2.resize(stored[y0:y1, x0:x1], ((x1 - x0) // factor, (y1 - y0) // factor),
                       interpolation=cv2.INTER_AREA)
    reduced = fit_crop((0, 0, means.shape[1], means.shape[0]), means.shape, model_hw, transform.mirrored)
    return _render(means, window, on_grid(reduced, stored.shape, factor, (float(x0), float(y0))), model_hw,
                   started, decoded)


def _render(decoded_image: np.ndarray, window: WindowTable, transform: ViewTransform,
            model_hw: tuple[int, int], started: float, decoded: float) -> ViewPixels:
    x0, y0, x1, y1 = transform.crop
    windowed = apply_table(decoded_image[y0:y1, x0:x1], window)
    windowed_at = time.perf_counter()
    pixels = render(windowed, transform, model_hw)
    seconds = {"decode": decoded - started, "window": windowed_at - decoded,
               "resize": time.perf_counter() - windowed_at}
    return ViewPixels(pixels=pixels, transform=transform, voi=window.kind, seconds=seconds)


def _prepare_reduced(decode: Callable[[int], np.ndarray], grid_of: Callable[[int], ReducedGrid | ScaledGrid],
                     levels: int, header: ImageHeader, hint: bool | None, model_hw: tuple[int, int],
                     started: float) -> ViewPixels | None:
    """A view decoded at reduced resolution: JPEG 2000 / HTJ2K wavelet levels left out, or JPEG's scaled DCT.
    `decode(r)` returns the stored values 2^r times smaller (BadRequest when the decoder refuses),
    `grid_of(r)` where its samples sit on the stored grid, `levels` the largest r the stream allows. None when
    there is nothing to leave out, or when the decoder refuses the reduction (JPEG 2000 tile-part headers may
    declare fewer levels than the main header): the caller then decodes at full resolution.

    The first decode is one level finer than the whole image would need (the breast crop is smaller than the
    image, usually by less than half per side); the breast is found on it. When the crop turns out to need a
    finer level (a small breast on a large detector), that level is decoded and the crop mapped onto it.
    """
    rows, columns = header.rows, header.columns
    first = max(0, min(levels, coarsest_reduction(columns, rows, model_hw) - 1))
    if first == 0:
        return None
    try:
        image = decode(first)
    except BadRequest:
        return None
    kind = voi_kind(header.dataset)
    window = build_table(header.dataset, stored_range=stored_range(image) if kind == "fallback" else None)
    step = preview_step(image.shape)
    transform = plan_view(apply_table(image[::step, ::step], window), step, image.shape, model_hw, hint)
    grid = grid_of(first)
    x0, y0, x1, y1 = transform.crop
    needed = min(levels, coarsest_reduction((x1 - x0) * grid.step, (y1 - y0) * grid.step, model_hw))
    if needed < first:
        stored_box = on_grid(transform, (rows, columns), grid.step, grid.offset).stored_crop
        grid = grid_of(needed)
        try:
            image = decode(needed)
        except BadRequest:
            return None
        (ox, oy), finer_rows, finer_columns = grid.offset, *image.shape
        crop = (max(0, int(np.floor((stored_box[0] - ox) / grid.step))),
                max(0, int(np.floor((stored_box[1] - oy) / grid.step))),
                min(finer_columns, int(np.ceil((stored_box[2] - ox) / grid.step))),
                min(finer_rows, int(np.ceil((stored_box[3] - oy) / grid.step))))
        transform = fit_crop(crop, image.shape, model_hw, transform.mirrored)
    transform = on_grid(transform, (rows, columns), grid.step, grid.offset)
    return _render(image, window, transform, model_hw, started, time.perf_counter())
