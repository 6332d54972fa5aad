"""The transformer applies the model's `calibration.json` to the study risk and says whether it did."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from duet.synthetic_dicom import synth_study
from transformers_pre.dicom.findings import CALIBRATION_FILE, RiskCalibration
from transformers_pre.settings import Settings

CALIBRATION = RiskCalibration(slope=1.8, intercept=-0.7)


def _study() -> list[bytes]:
    # Two views with a faint disk each: the stand-in detector judges them diagnostic and scores them below 1.
    blobs = []
    for image in synth_study(57, images=2, rows=512, columns=416, degraded=False):
        stored = np.full((512, 416), 1800, np.uint16)
        yy, xx = np.mgrid[0:512, 0:416]
        centre_x = 120 if image.laterality == "L" else 296
        stored[(xx - centre_x) ** 2 + (yy - 250) ** 2 < 81] = 2100
        image.dataset.PixelData = stored.astype("<u2").tobytes()
        image.dataset.WindowCenter, image.dataset.WindowWidth = "2048", "4096"
        blobs.append(image.to_bytes())
    return blobs


@pytest.fixture()
def calibrated_model(mammography, standin_repository: Path, tmp_path: Path):
    from transformers_pre.dicom.model import MammographyModel

    repository = tmp_path / "repository"
    shutil.copytree(standin_repository, repository)
    (repository / "mammo_detector" / CALIBRATION_FILE).write_text(json.dumps(CALIBRATION.to_json()))
    predictor = type(mammography.predictor)(repository / "mammo_detector" / "1" / "model.onnx")
    model = MammographyModel(Settings(model_repository=repository), predictor)  # type: ignore[arg-type]
    model.load()
    yield model
    model.pools.shutdown()


async def test_calibrated_risk_is_the_calibration_of_the_uncalibrated_one(
    mammography, calibrated_model, dicom_request
) -> None:
    blobs = _study()
    plain, _ = await mammography(dicom_request(blobs))
    calibrated, _ = await calibrated_model(dicom_request(blobs))
    raw = float({o.name: o.as_numpy() for o in plain.outputs}["risk"][0])
    risk = float({o.name: o.as_numpy() for o in calibrated.outputs}["risk"][0])
    assert 0 < raw < 1
    assert risk == pytest.approx(CALIBRATION.apply(raw), abs=1e-6) and abs(risk - raw) > 1e-3
    assert plain.parameters["risk_calibrated"] is False
    assert calibrated.parameters["risk_calibrated"] is True


def test_a_model_without_calibration_logs_that_its_risk_is_uncalibrated(mammography, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="duet.mammography"):
        mammography.load()
    assert mammography.calibration is None
    assert any("uncalibrated" in record.getMessage() for record in caplog.records)
