"""A study's views: laterality/view fallbacks, orientation hints, concurrent preparation."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.sequence import Sequence

from duet.dicom_synth import synth_study
from transformers_pre.dicom.study import (
    chest_wall_hint,
    laterality_of,
    prepare_image,
    prepare_study,
    read_study,
    view_of,
)
from transformers_pre.errors import BadRequest
from transformers_pre.settings import DicomSettings


def _ds(**attributes: object) -> Dataset:
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def _view_code(code: str) -> Sequence:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code, "SCT", "view"
    return Sequence([item])


def test_laterality_prefers_image_laterality_then_series_laterality() -> None:
    assert laterality_of(_ds(ImageLaterality="R", Laterality="L")) == "R"
    assert laterality_of(_ds(Laterality="L")) == "L"
    assert laterality_of(_ds(ImageLaterality="", Laterality="r ")) == "R"
    assert laterality_of(_ds()) == "U"


def test_view_prefers_view_position_then_view_code() -> None:
    assert view_of(_ds(ViewPosition="mlo", ViewCodeSequence=_view_code("399162004"))) == "MLO"
    assert view_of(_ds(ViewCodeSequence=_view_code("399162004"))) == "CC"
    assert view_of(_ds(ViewPosition="", ViewCodeSequence=_view_code("399368009"))) == "MLO"
    assert view_of(_ds(ViewCodeSequence=_view_code("12345"))) == "U"
    assert view_of(_ds()) == "U"


def test_chest_wall_hint_from_patient_orientation_then_laterality() -> None:
    assert chest_wall_hint(_ds(PatientOrientation=["P", "L"]), "L") is True
    assert chest_wall_hint(_ds(PatientOrientation=["A", "FR"]), "R") is False
    assert chest_wall_hint(_ds(), "R") is True
    assert chest_wall_hint(_ds(), "U") is None


def test_unknown_views_are_never_duplicates() -> None:
    study = synth_study(51, images=2, rows=64, columns=52)
    for image in study:
        del image.dataset.ViewPosition, image.dataset.ViewCodeSequence
    images = read_study([image.to_bytes() for image in study], DicomSettings())
    assert [(image.laterality, image.view) for image in images] == [("L", "U"), ("R", "U")]


def test_duplicate_found_through_the_view_code_fallback() -> None:
    study = synth_study(52, images=3, rows=64, columns=52)
    study[2].dataset.ImageLaterality = "L"
    study[2].dataset.ViewPosition = ""
    study[2].dataset.ViewCodeSequence = _view_code("399162004")
    with pytest.raises(BadRequest, match="images 0 and 2 are both L CC"):
        read_study([image.to_bytes() for image in study], DicomSettings())


def test_concurrent_preparation_equals_serial_and_keeps_request_order() -> None:
    study = synth_study(53, images=4, rows=256, columns=208, syntax="j2k", degraded=False)
    blobs = [image.to_bytes() for image in study]
    images = read_study(blobs, DicomSettings())
    serial = [prepare_image(blobs[image.index], image, (128, 104), "mammography") for image in images]
    with ThreadPoolExecutor(max_workers=2) as pool:
        concurrent = asyncio.run(prepare_study(blobs, images, (128, 104), pool, "mammography"))
    assert [item.image.index for item in concurrent] == [0, 1, 2, 3]
    for a, b in zip(serial, concurrent):
        np.testing.assert_array_equal(a.pixels, b.pixels)
        assert a.transform == b.transform
    # Right breasts (stored chest wall right) are mirrored, left ones are not.
    assert [item.transform.mirrored for item in concurrent] == [False, True, False, True]


def test_one_failing_view_fails_the_study_after_all_views_finish() -> None:
    study = synth_study(54, images=2, rows=128, columns=104, syntax="rle")
    frame = next(generate_frames(study[1].dataset.PixelData, number_of_frames=1))
    study[1].dataset.PixelData = encapsulate([frame[:100]])  # the segments end early
    blobs = [image.to_bytes() for image in study]
    images = read_study(blobs, DicomSettings())
    with ThreadPoolExecutor(max_workers=2) as pool:
        with pytest.raises(BadRequest, match="image 1: pixel data cannot be decoded as RLE Lossless"):
            asyncio.run(prepare_study(blobs, images, (64, 52), pool, "mammography"))
