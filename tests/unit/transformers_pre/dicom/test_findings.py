"""Post-processing: IoU, class-agnostic NMS, score threshold, mapping to stored pixels, quality gating, risk."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from transformers_pre.dicom.findings import (
    CALIBRATION_FILE,
    RiskCalibration,
    Thresholds,
    collect_findings,
    load_calibration,
    nms,
    pairwise_iou,
    study_risk,
)
from transformers_pre.dicom.geometry import ViewTransform
from transformers_pre.dicom.intake import ImageHeader
from transformers_pre.dicom.preparation import PreparedImage
from transformers_pre.dicom.study import StudyImage
from transformers_pre.errors import PredictorError, Unprocessable

NAMES = ["malignant_mass", "benign_mass", "calcification"]
THRESHOLDS = Thresholds(score=0.3, nms_iou=0.5, quality=0.5)


def test_pairwise_iou() -> None:
    boxes = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30], [3, 3, 3, 8]], float)
    np.testing.assert_allclose(pairwise_iou(np.array([0, 0, 10, 10.0]), boxes), [1 / 3, 1.0, 0.0, 0.0])


def test_nms_keeps_the_best_of_overlapping_boxes_in_score_order() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 9]], float)
    scores = np.array([0.6, 0.9, 0.4, 0.7])
    # Box 1 (0.9) suppresses 0 (IoU 0.68) and 3 (IoU 0.6); box 2 does not overlap.
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), [1, 2])
    np.testing.assert_array_equal(nms(boxes, scores, 0.95), [1, 3, 0, 2])
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).size == 0


def test_risk_is_max_per_breast_then_noisy_or() -> None:
    # L: max(0.2, 0.6) = 0.6; R: 0.5 -> 1 - 0.4 * 0.5 = 0.8
    assert study_risk([0.2, 0.5, 0.6], ["L", "R", "L"], [True, True, True]) == pytest.approx(0.8)
    # The non-diagnostic L MLO no longer counts: 1 - 0.8 * 0.5 = 0.6
    assert study_risk([0.2, 0.5, 0.6], ["L", "R", "L"], [True, True, False]) == pytest.approx(0.6)
    # Unknown laterality: each image is its own breast.
    assert study_risk([0.5, 0.5], ["U", "U"], [True, True]) == pytest.approx(0.75)
    assert study_risk([0.3], ["R"], [True]) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        study_risk([0.9], ["L"], [False])


def _prepared(index: int, laterality: str, transform: ViewTransform) -> PreparedImage:
    header = ImageHeader(index, Dataset(), ExplicitVRLittleEndian, False, *transform.stored_shape, 1, 16, 12,
                         False, "MONOCHROME2", f"1.2.3.{index}")
    return PreparedImage(StudyImage(header, laterality, "CC"), np.zeros((64, 48), np.float32), transform, "window")


def _outputs(boxes: list, scores: list, classes: list, malignancy: list, quality: list) -> dict:
    return {
        "boxes": np.array(boxes, np.float32),
        "scores": np.array(scores, np.float32),
        "classes": np.array(classes, np.int64),
        "malignancy": np.array(malignancy, np.float32)[:, None],
        "quality": np.array(quality, np.float32)[:, None],
    }


def test_collect_maps_to_stored_pixels_with_threshold_nms_and_gating() -> None:
    # Image 0: crop at (100, 50), scale 0.1 (640 x 480 stored crop -> 64 x 48), not mirrored.
    plain = _prepared(0, "L", ViewTransform((700, 600), (100, 50, 580, 690), (64, 48), False))
    # Image 1: same geometry, mirrored.
    mirrored = _prepared(1, "R", ViewTransform((700, 600), (20, 50, 500, 690), (64, 48), True))
    # Image 2: non-diagnostic; its confident finding must not appear.
    poor = _prepared(2, "L", ViewTransform((700, 600), (0, 0, 600, 700), (64, 55), False))
    outputs = _outputs(
        boxes=[
            [[10, 10, 20, 20], [11, 11, 21, 21], [30, 40, 34, 44], [0, 0, 1, 1]],
            [[8, 8, 18, 28], [0, 0, 4, 4], [0, 0, 4, 4], [0, 0, 4, 4]],
            [[10, 10, 20, 20], [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]],
        ],
        scores=[[0.9, 0.8, 0.5, 0.1], [0.7, 0.2, 0.2, 0.2], [0.99, 0, 0, 0]],
        classes=[[0, 1, 2, 0], [1, 0, 0, 0], [0, 0, 0, 0]],
        malignancy=[0.7, 0.2, 0.99],
        quality=[0.9, 0.8, 0.1],
    )
    found = collect_findings(outputs, [plain, mirrored, poor], NAMES, THRESHOLDS)
    # Image 0: box 1 suppressed by box 0 although of another class (class-agnostic); box 3 under threshold.
    np.testing.assert_array_equal(found.image_index, [0, 0, 1])
    assert found.labels == ["malignant_mass", "calcification", "benign_mass"]
    np.testing.assert_allclose(found.scores, [0.9, 0.5, 0.7], rtol=1e-6)
    np.testing.assert_allclose(found.boxes[0], [200, 150, 300, 250], atol=1e-3)
    np.testing.assert_allclose(found.boxes[1], [400, 450, 440, 490], atol=1e-3)
    # Mirrored: model x in [8, 18] -> stored 20 + (48 - 18) / 0.1 .. 20 + (48 - 8) / 0.1
    np.testing.assert_allclose(found.boxes[2], [320, 130, 420, 330], atol=1e-3)
    assert found.diagnostic == [True, True, False]
    np.testing.assert_allclose(found.quality, [0.9, 0.8, 0.1], rtol=1e-6)
    assert found.risk == pytest.approx(1 - 0.3 * 0.8)  # L 0.7, R 0.2; the poor L image (0.99) is excluded
    assert found.boxes.dtype == np.float32 and found.image_index.dtype == np.int32


def test_no_diagnostic_image_is_422_saying_so() -> None:
    image = _prepared(0, "L", ViewTransform((100, 80), (0, 0, 80, 100), (64, 52), False))
    outputs = _outputs([[[1, 1, 5, 5]]], [[0.9]], [[0]], [0.9], [0.2])
    with pytest.raises(Unprocessable, match="no diagnostic image in the study.*image 0: 0.20"):
        collect_findings(outputs, [image], NAMES, THRESHOLDS)


def test_unknown_class_id_is_a_predictor_error() -> None:
    image = _prepared(0, "L", ViewTransform((100, 80), (0, 0, 80, 100), (64, 52), False))
    outputs = _outputs([[[1, 1, 5, 5]]], [[0.9]], [[7]], [0.9], [0.9])
    with pytest.raises(PredictorError, match="class id 7"):
        collect_findings(outputs, [image], NAMES, THRESHOLDS)


def test_no_findings_gives_empty_well_typed_outputs() -> None:
    image = _prepared(0, "L", ViewTransform((100, 80), (0, 0, 80, 100), (64, 52), False))
    found = collect_findings(_outputs([[[1, 1, 5, 5]]], [[0.1]], [[0]], [0.05], [0.9]), [image], NAMES, THRESHOLDS)
    assert found.boxes.shape == (0, 4) and found.scores.shape == (0,) and found.labels == []
    assert found.risk == pytest.approx(0.05)


def test_platt_calibration_is_monotone_and_maps_the_raw_risk() -> None:
    calibration = RiskCalibration(slope=2.0, intercept=-1.0)
    raw = np.array([0.0, 0.1, 0.5, 0.9, 1.0])
    calibrated = calibration.apply(raw)
    assert np.all(np.diff(calibrated) > 0) and np.all((calibrated > 0) & (calibrated < 1))
    # sigmoid(2 * logit(0.5) - 1) = sigmoid(-1)
    assert calibration.apply(0.5) == pytest.approx(1 / (1 + np.e))
    assert RiskCalibration(1.0, 0.0).apply(0.3) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="slope > 0"):
        RiskCalibration(slope=-1.0, intercept=0.0)


def test_collect_applies_the_calibration_to_the_study_risk_and_says_so() -> None:
    image = _prepared(0, "L", ViewTransform((100, 80), (0, 0, 80, 100), (64, 52), False))
    outputs = _outputs([[[1, 1, 5, 5]]], [[0.1]], [[0]], [0.4], [0.9])
    calibration = RiskCalibration(slope=1.5, intercept=-0.5)
    plain = collect_findings(outputs, [image], NAMES, THRESHOLDS)
    calibrated = collect_findings(outputs, [image], NAMES, THRESHOLDS, calibration)
    assert not plain.risk_calibrated and plain.risk == pytest.approx(0.4) == plain.raw_risk
    assert calibrated.risk_calibrated and calibrated.raw_risk == pytest.approx(0.4)
    assert calibrated.risk == pytest.approx(calibration.apply(0.4)) and calibrated.risk != pytest.approx(0.4)


def test_calibration_file_round_trips_and_a_missing_one_is_none(tmp_path) -> None:
    assert load_calibration(tmp_path) is None
    calibration = RiskCalibration(slope=1.7, intercept=-0.2)
    (tmp_path / CALIBRATION_FILE).write_text(json.dumps(calibration.to_json(fitted_on={"studies": 10})))
    assert load_calibration(tmp_path) == calibration


@pytest.mark.parametrize("document", ['{"method": "isotonic"}', '{"method": "platt"}', "not json",
                                      '{"method": "platt", "slope": 0, "intercept": 1}'])
def test_a_broken_calibration_file_is_refused_not_ignored(tmp_path, document: str) -> None:
    (tmp_path / CALIBRATION_FILE).write_text(document)
    with pytest.raises(ValueError):
        load_calibration(tmp_path)
