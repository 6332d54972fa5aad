"""Honest labelling: the model card decides whether results say "NOT FOR CLINICAL USE", in the response and the SR;
the SR records the images gated out as non-diagnostic; the SR's series number and description are settings.

The mammography model runs in-process in front of the stand-in ONNX detector (conftest.py), so the responses and
SRs here are the ones the served pipeline builds.
"""

from __future__ import annotations

import json
import shutil
from io import BytesIO
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom.sr.codedict import codes

from duet.synthetic_dicom import synth_image
from transformers_pre.clinical_use import CLEARED_FIELD, InvalidModelCard, read_clinical_use
from transformers_pre.settings import DicomSettings, Settings

SHIPPED_DETECTOR = Path(__file__).resolve().parents[4] / "models" / "model_repository" / "mammo_detector"
SEED, ROWS, COLUMNS = 43, 512, 416


def mammogram(index: int, laterality: str, view: str, *, dark: bool = False) -> bytes:
    """A synthetic view; `dark`: a non-diagnostic exposure (every pixel near black after windowing), which the
    stand-in detector rates below the quality threshold."""
    image = synth_image(SEED, index=index, laterality=laterality, view=view, rows=ROWS, columns=COLUMNS,
                        study_seed=SEED)
    if dark:
        image.dataset.PixelData = np.full((ROWS, COLUMNS), 100, "<u2").tobytes()
        image.dataset.WindowCenter, image.dataset.WindowWidth = "2048", "4096"
    return image.to_bytes()


def test_a_model_without_a_card_is_not_cleared(tmp_path: Path) -> None:
    label = read_clinical_use(tmp_path)
    assert not label.cleared
    assert label.notice is not None and label.notice.startswith("NOT FOR CLINICAL USE: ")


def test_a_card_without_the_field_is_not_cleared_and_its_validity_statement_is_quoted(tmp_path: Path) -> None:
    (tmp_path / "card.json").write_text(json.dumps({"clinical_validity": "Trained on phantoms only."}))
    label = read_clinical_use(tmp_path)
    assert (label.cleared, label.notice) == (False, "NOT FOR CLINICAL USE: Trained on phantoms only.")


def test_a_card_that_clears_the_model_removes_the_label(tmp_path: Path) -> None:
    (tmp_path / "card.json").write_text(json.dumps({CLEARED_FIELD: True, "clinical_validity": "510(k) K000000"}))
    label = read_clinical_use(tmp_path)
    assert (label.cleared, label.notice) == (True, None)


@pytest.mark.parametrize("card", ['{"cleared_for_clinical_use": "yes"}', "[]", "{not json"])
def test_a_card_that_cannot_say_is_an_error_naming_the_file(tmp_path: Path, card: str) -> None:
    (tmp_path / "card.json").write_text(card)
    with pytest.raises(InvalidModelCard, match="card.json"):
        read_clinical_use(tmp_path)


@pytest.mark.skipif(not (SHIPPED_DETECTOR / "card.json").exists(),
                    reason="the shipped detector is not built here (make models)")
def test_the_shipped_synthetic_phantom_detector_is_not_cleared() -> None:
    label = read_clinical_use(SHIPPED_DETECTOR)
    assert not label.cleared
    assert label.notice is not None and "synthetic phantoms" in label.notice


def _report(response) -> hd.sr.Comprehensive3DSR:
    (report,) = [output for output in response.outputs if output.name == "report"]
    return hd.sr.srread(BytesIO(report.as_numpy()[0]))


def _comments(sr: hd.sr.Comprehensive3DSR) -> list[str]:
    return [item.TextValue for container in sr.ContentSequence
            if container.ConceptNameCodeSequence[0].CodeValue == "C0034375"
            for item in container.ContentSequence if item.ConceptNameCodeSequence[0].CodeValue == "121106"]


async def test_every_response_and_sr_of_an_uncleared_model_carry_the_label(mammography, dicom_request) -> None:
    blob = mammogram(0, "L", "CC")
    for parameters in ({}, {"report": "sr"}):
        response, _ = await mammography(dicom_request([blob], parameters=parameters))
        assert response.parameters["cleared_for_clinical_use"] is False
        assert response.parameters["clinical_use_notice"].startswith("NOT FOR CLINICAL USE: ")
    sr = _report(response)
    assert _comments(sr) == [response.parameters["clinical_use_notice"]]
    assert sr.SeriesDescription == "NOT FOR CLINICAL USE - duet mammography AI results"
    assert sr.SeriesNumber == 9001


async def test_the_sr_records_the_gated_image_by_reference(mammography, dicom_request) -> None:
    blobs = [mammogram(0, "L", "CC"), mammogram(1, "R", "CC", dark=True)]
    response, _ = await mammography(dicom_request(blobs, parameters={"report": "sr"}))
    images = json.loads(response.parameters["images"])
    assert [image["diagnostic"] for image in images] == [True, False]
    sr = _report(response)
    (gated,) = [group for group in sr.content.get_image_measurement_groups()
                if group.finding_type is not None and group.finding_type.value == "111235"]
    (source,) = gated.source_images
    assert source.referenced_sop_instance_uid == images[1]["sop_instance_uid"]
    (quality,) = gated.get_measurements()
    assert quality.name.value == "111029"
    assert quality.value < 0.5
    assert "image 1 (R CC)" in str(gated.tracking_identifier)
    # The study risk references the diagnostic image it was computed from, and the findings stay on it.
    (study,) = [group for group in sr.content.get_image_measurement_groups() if group.finding_type is None]
    assert [image.referenced_sop_instance_uid for image in study.source_images] == [images[0]["sop_instance_uid"]]
    for group in sr.content.get_planar_roi_measurement_groups():
        assert group.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == \
            images[0]["sop_instance_uid"]


@pytest.fixture()
def cleared_mammography(mammography, standin_repository: Path, tmp_path: Path):
    """The stand-in detector (the same in-process predictor) with a card that clears it, and a site's own SR
    series settings."""
    from transformers_pre.dicom.model import MammographyModel

    repository = tmp_path / "repository"
    shutil.copytree(standin_repository, repository)
    (repository / "mammo_detector" / "card.json").write_text(json.dumps({CLEARED_FIELD: True}))
    settings = Settings(model_repository=repository,
                        dicom=DicomSettings(sr_series_number=4711, sr_series_description="Site CAD results"))
    model = MammographyModel(settings, mammography.predictor)
    model.load()
    yield model
    model.pools.shutdown()


async def test_a_cleared_model_answers_without_the_label_in_the_configured_series(
    cleared_mammography, dicom_request
) -> None:
    response, _ = await cleared_mammography(
        dicom_request([mammogram(0, "L", "CC")], parameters={"report": "sr"}))
    assert response.parameters["cleared_for_clinical_use"] is True
    assert "clinical_use_notice" not in response.parameters
    sr = _report(response)
    assert _comments(sr) == []
    assert (sr.SeriesNumber, sr.SeriesDescription) == (4711, "Site CAD results")
    (study,) = [group for group in sr.content.get_image_measurement_groups() if group.finding_type is None]
    assert study.get_measurements(name=codes.DCM.ProbabilityOfCancer)


def test_a_description_that_leaves_no_room_for_the_label_is_refused() -> None:
    with pytest.raises(ValueError, match="sr_series_description"):
        DicomSettings(sr_series_description="x" * 42)
