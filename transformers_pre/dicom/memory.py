"""The memory a study's preparation takes, estimated from its headers before any pixel is decoded, and the
process-wide budget that admits studies against it.

Without this, a study's memory was bounded only by its caps (file size, Rows x Columns, inflated size), and the
in-flight bound multiplied it: 16 admitted studies of four 6144 x 6144 JPEG-LS views would need ~10 GB.

Measured by `python -m benchmarks.memory_peaks` (2026-12-02, x86_64; RSS growth of one process preparing one
4096 x 3328 view: 26 MiB frame at 12 bits, 13 MiB for 8-bit JPEG Baseline):

| path | peak growth |
|---|---|
| uncompressed, read in place from the request (block means) | 1 MiB (0.03 x frame); 12 MiB without block means |
| JPEG 2000, reduced resolution; JPEG Baseline, scaled | 6 MiB; under 1 MiB |
| full decode: JPEG 2000 at full resolution, JPEG-LS | 59-63 MiB (2.3-2.4 x frame) |
| full decode: JPEG Baseline | 42 MiB (3.3 x the 8-bit frame) |

`preparation_bytes` rounds those up: half a frame in place, file + half a frame reduced, file + 3 frames for
a full decode. The request body itself is bounded separately (`max_request_bytes`, held until the answer).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ..blob import Blob
from ..errors import Overloaded, PayloadTooLarge
from ..metrics import RESERVED_MEMORY
from .decode import JPEG2000_SYNTAXES
from .pixels import NATIVE_IN_PLACE
from .study import StudyImage

logger = logging.getLogger("duet.dicom")
MIB = 1024 * 1024


def preparation_bytes(image: StudyImage, file_bytes: int, resolution_aware: bool) -> int:
    """Peak bytes that preparing `image` may allocate (module docstring), from its header alone.

    A reduced JPEG 2000 decode that the decoder refuses falls back to a full decode (rare: a tile-part header
    declaring fewer levels than the main header); the estimate is the reduced one.
    """
    header = image.header
    frame = header.rows * header.columns * header.bits_allocated // 8
    if header.transfer_syntax in NATIVE_IN_PLACE:
        return frame // 2
    if header.transfer_syntax in JPEG2000_SYNTAXES and resolution_aware:
        return file_bytes + frame // 2
    return file_bytes + 3 * frame


def study_preparation_bytes(blobs: Sequence[Blob], images: Sequence[StudyImage], resolution_aware: bool,
                            limit: int) -> int:
    """The study's estimate (its views are prepared concurrently, so their peaks add up); 413 naming the image at
    which the total passes `limit`."""
    total = 0
    for image in images:
        needed = preparation_bytes(image, len(blobs[image.index]), resolution_aware)
        total += needed
        if total > limit:
            header = image.header
            raise PayloadTooLarge(
                f"preparing this study needs about {total / MIB:.0f} MiB by this image ({needed / MIB:.0f} MiB for "
                f"its {header.rows} x {header.columns} {header.bits_allocated}-bit frame); the limit per study is "
                f"{limit / MIB:.0f} MiB", image_index=image.index)
    return total


class MemoryBudget:
    """Bytes reserved by the studies this process is preparing now. A study that would take the total past
    `limit` while others are being prepared is refused with 429 (Retry-After): the client retries when memory is
    free, instead of the process being killed for it. One event loop per process, so a plain counter is exact.
    """

    def __init__(self, limit: int, model: str) -> None:
        self.limit = limit
        self.model = model
        self.reserved = 0
        RESERVED_MEMORY.labels(model).set(0)

    @contextmanager
    def reserve(self, amount: int) -> Iterator[None]:
        """Hold `amount` bytes for the duration of the block."""
        if self.reserved and self.reserved + amount > self.limit:
            raise Overloaded(f"{self.model} is preparing studies that hold {self.reserved / MIB:.0f} MiB of its "
                             f"{self.limit / MIB:.0f} MiB; this one needs {amount / MIB:.0f} MiB: retry later")
        self.reserved += amount
        RESERVED_MEMORY.labels(self.model).set(self.reserved)
        try:
            yield
        finally:
            self.reserved -= amount
            RESERVED_MEMORY.labels(self.model).set(self.reserved)
