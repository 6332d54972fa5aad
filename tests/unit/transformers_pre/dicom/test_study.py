"""A study's images: laterality and view with their fallbacks, and the study-level checks."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from duet.synthetic_dicom import synth_study
from transformers_pre.dicom.study import laterality_of, read_study, view_of
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


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")
def test_laterality_prefers_image_laterality_then_series_laterality() -> None:
    assert laterality_of(_ds(ImageLaterality="R", Laterality="L")) == "R"
    assert laterality_of(_ds(Laterality="L")) == "L"
    assert laterality_of(_ds(ImageLaterality="", Laterality="r ")) == "R"
    assert laterality_of(_ds()) == "U"


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")
def test_view_prefers_view_position_then_view_code() -> None:
    assert view_of(_ds(ViewPosition="mlo", ViewCodeSequence=_view_code("399162004"))) == "MLO"
    assert view_of(_ds(ViewCodeSequence=_view_code("399162004"))) == "CC"
    assert view_of(_ds(ViewPosition="", ViewCodeSequence=_view_code("399368009"))) == "MLO"
    assert view_of(_ds(ViewCodeSequence=_view_code("12345"))) == "U"
    assert view_of(_ds()) == "U"


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
