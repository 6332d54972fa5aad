"""A study's images before any pixel: laterality and view, and the study-level checks.

Laterality, first found wins: ImageLaterality (0020,0062), then the series' Laterality (0020,0060), else "U"
(unknown). View: ViewPosition (0018,5101) as written (CC, MLO, ML, LM, XCCL, ...), else the first View Code
Sequence (0054,0220) item's SNOMED code (cranio-caudal 399162004 -> CC, medio-lateral oblique 399368009 ->
MLO, medio-lateral 399260004 -> ML, latero-medial 399352003 -> LM), else "U". Two images with the same known
laterality and view, or the same SOP Instance UID, are a 400; so are images of different studies (one study
per request). Images with an unknown laterality or view are never called duplicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset

from ..blob import Blob
from ..errors import BadRequest, PayloadTooLarge
from ..metrics import STUDY_IMAGES
from ..settings import DicomSettings
from .intake import ImageHeader, read_header

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


def read_study(blobs: Sequence[Blob], settings: DicomSettings) -> list[StudyImage]:
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
            raise BadRequest(f"images {first} and {image.index} are the same SOP instance",
                             image_index=image.index)
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
