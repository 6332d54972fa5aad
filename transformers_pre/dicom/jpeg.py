"""JPEG Baseline (8-bit, ISO/IEC 10918-1): the frame header checked against the DICOM header, and decoding at
1/2, 1/4 or 1/8 scale in the DCT domain.

libjpeg can run its inverse DCT on the low-frequency corner of each 8 x 8 block only, returning the image 2, 4 or
8 times smaller in each direction at a fraction of the cost (no full-size image is ever built). Pillow exposes it
as `Image.draft`, with the libjpeg-turbo it bundles (BSD-style licence; pydicom's own 'pillow' plugin decodes the
same syntax at full resolution). A scaled sample is the block's DC term plus its lowest frequencies: close to
the mean of its s x s block of stored pixels, so sample u stands for stored pixels [s * u, s * (u + 1)) and the
grid has no offset (like the uncompressed path's block means), and the scaled image has ceil(size / s) samples.

JPEG Extended (12-bit) and Lossless are not decoded here: Pillow reads 8-bit samples only, and pydicom's decoder
for them (pylibjpeg-libjpeg) is GPLv3.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..blob import Blob, open_blob
from ..errors import BadRequest, PayloadTooLarge

# libjpeg's scaled inverse DCTs that Pillow's draft picks from: 1/1, 1/2, 1/4, 1/8.
MAX_REDUCTION = 3


@dataclass(frozen=True)
class ScaledGrid:
    """Decoded pixel (row v, column u) covers stored pixels [step * v, step * (v + 1)) x [step * u, ...)."""

    step: int
    offset: tuple[float, float] = (0.0, 0.0)


def check_jpeg(frame: Blob, rows: int, columns: int, bits_stored: int, index: int) -> None:
    """The JPEG frame header (SOF) read before decoding: one 8-bit component of Rows x Columns; no larger than the
    raw frame it encodes (413). 400 otherwise."""
    from PIL import Image

    if len(frame) > rows * columns:
        raise PayloadTooLarge(f"the JPEG stream has {len(frame)} bytes, more than the {rows * columns} bytes of the "
                              f"raw {rows} x {columns} frame it encodes", image_index=index)
    try:
        with open_blob(frame) as stream, Image.open(stream, formats=["JPEG"]) as image:
            size, mode = image.size, image.mode
    except Exception as error:  # noqa: BLE001 - Pillow raises OSError, SyntaxError for bad streams
        raise BadRequest(f"the JPEG stream cannot be read ({type(error).__name__})", image_index=index) from None
    problems = []
    if size != (columns, rows):
        problems.append(f"{size[1]} x {size[0]} pixels (the header says {rows} x {columns})")
    if mode != "L":
        problems.append(f"mode {mode} (one 8-bit component expected)")
    if bits_stored != 8:
        problems.append(f"8-bit samples (BitsStored is {bits_stored})")
    if problems:
        raise BadRequest("the JPEG stream disagrees with the DICOM header: " + "; ".join(problems),
                         image_index=index)


def decode_scaled(frame: Blob, reduction: int, rows: int, columns: int, index: int) -> np.ndarray:
    """The stored values (uint8) [ceil(rows / 2^r), ceil(columns / 2^r)] decoded at 1 / 2^reduction scale."""
    from PIL import Image

    if not 0 <= reduction <= MAX_REDUCTION:
        raise ValueError(f"reduction {reduction} outside 0..{MAX_REDUCTION}")
    step = 1 << reduction
    expected = (-(-rows // step), -(-columns // step))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # sizes were checked already
            with open_blob(frame) as stream, Image.open(stream, formats=["JPEG"]) as image:
                # Pillow picks the largest scale s with size // request >= s, and returns ceil(size / s).
                image.draft("L", (max(1, columns // step), max(1, rows // step)))
                image.load()
                decoded = np.asarray(image)
    except Exception as error:  # noqa: BLE001 - Pillow raises OSError for truncated or corrupt streams
        raise BadRequest(f"the JPEG stream cannot be decoded ({type(error).__name__}: {str(error)[:200]})",
                         image_index=index) from None
    if decoded.shape != expected or decoded.dtype != np.uint8:
        raise BadRequest(f"the JPEG stream decoded to {decoded.dtype} {list(decoded.shape)} at 1/{step} scale, "
                         f"expected uint8 {list(expected)}", image_index=index)
    return decoded
