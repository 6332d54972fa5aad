"""The views of one study: laterality and view, study-level checks, and concurrent per-image preparation.

Laterality, first found wins: ImageLaterality (0020,0062), then the series' Laterality (0020,0060), else "U"
(unknown). View: ViewPosition (0018,5101) as written (CC, MLO, ML, LM, XCCL, ...), else the first View Code
Sequence (0054,0220) item's SNOMED code (cranio-caudal 399162004 -> CC, medio-lateral oblique 399368009 -> MLO,
medio-lateral 399260004 -> ML, latero-medial 399352003 -> LM), else "U". Two images with the same known
laterality and view, or the same SOP Instance UID, are a 400; so are images of different studies (one study per
request). Images with an unknown laterality or view are never called duplicates.

Each image is decoded, windowed, cropped and resized in a thread of a bounded pool: the codecs, numpy's gather and
OpenCV release the GIL, so a 4-view study costs little more than its slowest view where cores allow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from ..errors import BadRequest, PayloadTooLarge
from ..metrics import STUDY_IMAGES, stage
from ..settings import DicomSettings
from .decode import decode_pixels
from .geometry import ViewTransform, plan_view, preview_step, render
from .intake import ImageHeader, read_header
from .window import apply_table, build_table, stored_range, voi_kind

VIEW_CODES = {"399162004": "CC", "399368009": "MLO", "399260004": "ML", "399352003": "LM"}
UNKNOWN = "U"


@dataclass(frozen=True)
class StudyImage:
    """One validated image of the study, before pixels: its header plus laterality and view."""

    header: ImageHeader
    laterality: str  # "L", "R", "B" (both) or "U" (unknown)
    view: str  # "CC", "MLO", ... or "U"

    @property
    def index(self) -> int:
        return self.header.index


@dataclass(frozen=True)
class PreparedImage:
    """One image ready for the detector: its [H, W] input and the transform back to stored pixels."""

    image: StudyImage
    pixels: np.ndarray  # float32 [H, W] in [0, 1]
    transform: ViewTransform
    voi: str  # which VOI was applied: "voi_lut", "window" or "fallback"


def laterality_of(ds: Dataset) -> str:
    """Image laterality from the header, with the fallbacks of the module docstring."""
    for keyword in ("ImageLaterality", "Laterality"):
        value = str(ds.get(keyword, "") or "").strip().upper()
        if value in ("L", "R", "B", "U"):
            return value
    return UNKNOWN


def view_of(ds: Dataset) -> str:
    """View position from the header, with the fallbacks of the module docstring."""
    value = str(ds.get("ViewPosition", "") or "").strip().upper()
    if value and value.replace("_", "").isalnum() and len(value) <= 8:
        return value
    for item in ds.get("ViewCodeSequence", None) or ():
        code = str(item.get("CodeValue", "") or "").strip()
        if code in VIEW_CODES:
            return VIEW_CODES[code]
    return UNKNOWN


def chest_wall_hint(ds: Dataset, laterality: str) -> bool | None:
    """What the header says about the chest wall being on the right (None when it says nothing).

    PatientOrientation's first value is the direction of increasing column index: "A" (towards anterior, so the
    chest wall is on the left) or "P" (chest wall on the right). Without it, the usual hanging convention: right
    breasts are stored chest wall right.
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


def read_study(blobs: Sequence[bytes], settings: DicomSettings) -> list[StudyImage]:
    """Header-only validation of every file, then the study-level checks; no pixel is decoded here."""
    if not blobs:
        raise BadRequest("input 'dicom' is empty: send 1 to 4 DICOM files of one study")
    if len(blobs) > settings.max_images:
        raise PayloadTooLarge(f"{len(blobs)} images in one study; the limit is {settings.max_images}")
    STUDY_IMAGES.observe(len(blobs))
    images = []
    for index, blob in enumerate(blobs):
        header = read_header(blob, index, settings)
        images.append(StudyImage(header, laterality_of(header.dataset), view_of(header.dataset)))
    check_study(images)
    return images


def check_study(images: Sequence[StudyImage]) -> None:
    """One study, no image twice, no laterality + view twice (400 naming both images)."""
    studies = {str(image.header.dataset.get("StudyInstanceUID", "") or "") for image in images}
    if len(studies) > 1:
        raise BadRequest("the images belong to different studies (StudyInstanceUID differs); send one study "
                         "per request")
    seen_uid: dict[str, int] = {}
    seen_view: dict[tuple[str, str], int] = {}
    for image in images:
        first = seen_uid.setdefault(image.header.sop_instance_uid, image.index)
        if first != image.index:
            raise BadRequest(f"images {first} and {image.index} are the same SOP instance", image_index=image.index)
        if UNKNOWN in (image.laterality, image.view):
            continue
        key = (image.laterality, image.view)
        first = seen_view.setdefault(key, image.index)
        if first != image.index:
            raise BadRequest(
                f"images {first} and {image.index} are both {image.laterality} {image.view}; a study has one "
                "image per laterality and view",
                image_index=image.index,
            )


def prepare_image(blob: bytes, image: StudyImage, model_hw: tuple[int, int], model_name: str) -> PreparedImage:
    """Decode, window, crop, orient and resize one image (runs in a worker thread)."""
    header = image.header
    with stage(model_name, "decode"):
        stored = decode_pixels(blob, header.transfer_syntax, header.index, forced=header.forced)
    with stage(model_name, "window"):
        kind = voi_kind(header.dataset)
        window = build_table(header.dataset, stored_range=stored_range(stored) if kind == "fallback" else None)
        step = preview_step(stored.shape)
        preview = apply_table(stored[::step, ::step], window)
        transform = plan_view(preview, step, stored.shape, model_hw,
                              chest_wall_hint(header.dataset, image.laterality))
        x0, y0, x1, y1 = transform.crop
        windowed = apply_table(stored[y0:y1, x0:x1], window)
    with stage(model_name, "resize"):
        pixels = render(windowed, transform, model_hw)
    return PreparedImage(image=image, pixels=pixels, transform=transform, voi=window.kind)


async def prepare_study(
    blobs: Sequence[bytes],
    images: Sequence[StudyImage],
    model_hw: tuple[int, int],
    executor: Executor,
    model_name: str,
) -> list[PreparedImage]:
    """Prepare every image concurrently in `executor` (its size bounds the decoding threads process-wide)."""
    loop = asyncio.get_running_loop()
    tasks = [
        loop.run_in_executor(executor, prepare_image, blobs[image.index], image, model_hw, model_name)
        for image in images
    ]
    # All tasks finish before an error propagates, so no worker keeps decoding for an abandoned request.
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return list(results)  # type: ignore[arg-type]
