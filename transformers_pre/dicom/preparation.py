"""A study's images prepared concurrently in the pools (`pools.py`), in request order, with each failure a 4xx
naming its image.

A 4-view study costs little more than its slowest view where cores allow. A failure inside a pool that is not
already a `DuetError` becomes a 422 naming the image, never a 500.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np

from ..blob import Blob
from ..errors import DuetError, PayloadTooLarge, Unprocessable
from ..metrics import DECODED_IMAGES, STAGE_SECONDS
from .decode import syntax_name
from .geometry import ViewTransform
from .pixels import ViewPixels, prepare_pixels
from .pools import DecodePools, prepare_in_worker
from .study import StudyImage

logger = logging.getLogger("duet.mammography")


@dataclass(frozen=True)
class PreparedImage:
    """One image ready for the detector: its [H, W] input and the transform back to stored pixels."""

    image: StudyImage
    pixels: np.ndarray  # float32 [H, W] in [0, 1]
    transform: ViewTransform
    voi: str  # which VOI was applied: "voi_lut", "window" or "fallback"


def _assemble(image: StudyImage, view: ViewPixels, model_name: str) -> PreparedImage:
    # Counted here, in the serving process, whichever path decoded the pixels (in place, reduced JPEG 2000, a
    # codec) and wherever it ran (a thread or a worker process, whose counters would never be exported).
    DECODED_IMAGES.labels(syntax_name(image.header.transfer_syntax)).inc()
    for name, seconds in view.seconds.items():
        STAGE_SECONDS.labels(model_name, name).observe(seconds)
    return PreparedImage(image=image, pixels=view.pixels, transform=view.transform, voi=view.voi)


def prepare_image(blob: Blob, image: StudyImage, model_hw: tuple[int, int], model_name: str) -> PreparedImage:
    """`prepare_pixels` for one image in this process, its stage times recorded under `model_name`."""
    return _assemble(image, prepare_pixels(blob, image.header, image.laterality, model_hw), model_name)


async def prepare_study(
    blobs: Sequence[Blob],
    images: Sequence[StudyImage],
    model_hw: tuple[int, int],
    pools: DecodePools,
    model_name: str,
) -> list[PreparedImage]:
    """Prepare every image concurrently (the pools' sizes bound the work process-wide), in request order."""
    loop = asyncio.get_running_loop()
    tasks = []
    for image in images:
        blob = blobs[image.index]
        if pools.uses_process(image.header):
            # A view of the request cannot be pickled: a worker process gets its own copy of the file.
            arguments = (prepare_in_worker, bytes(blob), image.index, image.laterality, model_hw,
                         pools.settings)
            try:
                tasks.append(loop.run_in_executor(pools.processes(), *arguments))
            except BrokenProcessPool:
                # A worker died before this request (killed for memory, say): start a fresh pool for it.
                pools.reset_processes()
                tasks.append(loop.run_in_executor(pools.processes(), *arguments))
        else:
            tasks.append(loop.run_in_executor(pools.threads(), prepare_pixels, blob, image.header,
                                              image.laterality, model_hw, pools.settings.resolution_aware))
    # All tasks finish before an error propagates, so no worker keeps decoding for an abandoned request.
    results = await asyncio.gather(*tasks, return_exceptions=True)
    prepared = []
    for image, result in zip(images, results):
        if isinstance(result, BrokenProcessPool):
            pools.reset_processes()
            raise Unprocessable("the pixel data could not be decoded: the decoder process crashed",
                                image_index=image.index)
        if isinstance(result, DuetError):
            if result.image_index is None:  # raised by a stage that does not know the image (window, decode)
                raise type(result)(result.message, image_index=image.index) from None
            raise result
        if isinstance(result, MemoryError):
            raise PayloadTooLarge("the image is too large to process with the memory available",
                                  image_index=image.index) from None
        if isinstance(result, Exception):
            # A decoder or numeric library failing on this file's bytes: the client's data, not the service,
            # so a 4xx naming the image. Only the type is logged (messages of some libraries quote values).
            logger.warning("image %d failed in preparation: %s", image.index, type(result).__name__)
            raise Unprocessable(f"the pixel data could not be processed ({type(result).__name__})",
                                image_index=image.index) from None
        if isinstance(result, BaseException):
            raise result
        prepared.append(_assemble(image, result, model_name))
    return prepared
