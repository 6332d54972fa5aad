"""Detector building blocks: framing, CenterNet targets, in-graph decoding, IoU and AP."""

from __future__ import annotations

import numpy as np
import pytest

from models.detector.data import fit_to_input, make_framed
from models.detector.evaluate import average_precision, iou
from models.detector.phantom import make_phantom


def test_fit_to_input_crops_breast_keeps_aspect_and_moves_boxes() -> None:
    phantom = make_phantom(4, 400, 325, n_lesions=2, degraded=False)
    framed, boxes = fit_to_input(phantom.image, phantom.boxes, phantom.breast_mask, 256, 208)
    assert framed.shape == (256, 208) and framed.dtype == np.float32
    rows = np.nonzero(phantom.breast_mask.any(axis=1))[0]
    cols = np.nonzero(phantom.breast_mask.any(axis=0))[0]
    crop_h, crop_w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    factor = min(256 / crop_h, 208 / crop_w)
    filled_h, filled_w = round(crop_h * factor), round(crop_w * factor)
    assert (filled_h == 256) or (filled_w == 208)  # one side fills the frame
    assert not framed[filled_h:].any() and not framed[:, filled_w:].any()  # zero padding right/bottom
    # The chest wall stays at the left edge: the left column is tissue, not air.
    assert framed[: filled_h // 2, 0].mean() > 0.2
    # Boxes follow the pixels: the brightest lesion pixel of each box is still inside it after framing.
    for before, after in zip(phantom.boxes, boxes):
        expected = (before - [cols[0], rows[0], cols[0], rows[0]]) * [
            filled_w / crop_w, filled_h / crop_h, filled_w / crop_w, filled_h / crop_h
        ]  # fmt: skip
        np.testing.assert_allclose(after, expected, rtol=1e-5, atol=1e-3)
        assert 0 <= after[0] < after[2] <= 208 and 0 <= after[1] < after[3] <= 256


def test_fit_to_input_blank_image_uses_whole_frame() -> None:
    image = np.full((100, 80), 0.3, np.float32)
    framed, boxes = fit_to_input(image, np.zeros((0, 4), np.float32), np.zeros((100, 80), bool), 64, 52)
    assert framed.shape == (64, 52) and boxes.shape == (0, 4)
    assert np.isclose(framed[:64, :51].mean(), 0.3, atol=1e-3)


def test_make_framed_is_deterministic_and_labels_match() -> None:
    a = make_framed(3, 6, 64, 52)
    b = make_framed(3, 6, 64, 52)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.images.shape == (6, 64, 52)
    assert len(a.boxes) == len(a.labels) == 6
    for i in range(6):
        phantom = make_phantom(3 * 1_000_003 + i, 80, 65)
        np.testing.assert_array_equal(a.labels[i], phantom.labels)
        assert a.quality[i] == (not phantom.degraded) and a.malignant[i] == phantom.malignant


def test_make_framed_workers_give_the_same_data() -> None:
    serial = make_framed(9, 5, 64, 52)
    parallel = make_framed(9, 5, 64, 52, workers=2)
    np.testing.assert_array_equal(serial.images, parallel.images)
    np.testing.assert_array_equal(serial.quality, parallel.quality)
    for a, b in zip(serial.boxes, parallel.boxes):
        np.testing.assert_array_equal(a, b)


def test_iou() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(iou(boxes[0], boxes), [1.0, 81 / 119, 0.0], rtol=1e-6)


def test_there_is_one_nms_the_served_one() -> None:
    import models.detector.evaluate as helpers

    assert not hasattr(helpers, "nms") and not hasattr(helpers, "detection_map")


def test_average_precision_known_cases() -> None:
    truth = [np.array([[0, 0, 10, 10]], np.float32), np.array([[5, 5, 15, 15]], np.float32)]
    perfect = [(t.copy(), np.array([0.9], np.float32)) for t in truth]
    assert average_precision(perfect, truth) == pytest.approx(1.0)
    missing = [(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))] * 2
    assert average_precision(missing, truth) == 0.0
    # One hit ranked below one false positive: precision 1/2 at recall 1/2 -> AP 0.25.
    shifted = np.array([[50, 50, 60, 60]], np.float32)
    mixed = [(truth[0], np.array([0.5], np.float32)), (shifted, np.array([0.9], np.float32))]
    assert average_precision(mixed, truth) == pytest.approx(0.25)
    # A duplicate detection of a found lesion is a false positive, not a second hit.
    dup = [(np.concatenate([truth[0], truth[0]]), np.array([0.9, 0.8], np.float32)), missing[0]]
    assert average_precision(dup, truth) == pytest.approx(0.5)
    assert np.isnan(average_precision(perfect, [np.zeros((0, 4), np.float32)] * 2))


torch = pytest.importorskip("torch")


def test_targets_and_decode_round_trip() -> None:
    """Targets made from boxes, fed back as perfect logits, decode to the same boxes and classes."""
    from models.detector.model import STRIDE, DenseOutputs, decode
    from models.detector.train import gaussian_targets

    boxes = np.array([[30.0, 40.0, 70.0, 72.0], [100.0, 120.0, 112.0, 136.0]], np.float32)
    labels = np.array([0, 2], np.int64)
    rows, cols = 256 // STRIDE, 208 // STRIDE
    heat, size, offset, mask = gaussian_targets(boxes, labels, rows, cols)
    assert heat.shape == (3, rows, cols) and mask.sum() == 2
    assert heat[0].max() == 1.0 and heat[2].max() == 1.0 and heat[1].max() == 0.0
    logits = torch.logit(torch.from_numpy(heat).clamp(1e-6, 1 - 1e-6))[None]
    outputs = DenseOutputs(
        logits,
        torch.from_numpy(size)[None],
        torch.from_numpy(offset)[None],
        torch.zeros(1, 1),
        torch.zeros(1, 1),
    )
    got_boxes, scores, classes, malignancy, quality = decode(outputs, 256, 208, k=5)
    assert got_boxes.shape == (1, 5, 4) and classes.dtype == torch.int64
    assert scores[0, :2].min() > 0.99 and scores[0, 2] < 0.99
    found = {int(c): b.numpy() for c, b in zip(classes[0, :2], got_boxes[0, :2])}
    np.testing.assert_allclose(found[0], boxes[0], atol=1e-3)
    np.testing.assert_allclose(found[2], boxes[1], atol=1e-3)
    assert float(malignancy) == pytest.approx(0.5) and float(quality) == pytest.approx(0.5)


def test_focal_loss_prefers_the_right_heatmap() -> None:
    from models.detector.train import focal_loss

    target = torch.zeros(1, 3, 8, 8)
    target[0, 1, 4, 4] = 1.0
    good = torch.full((1, 3, 8, 8), -6.0)
    good[0, 1, 4, 4] = 6.0
    bad = torch.full((1, 3, 8, 8), -6.0)
    bad[0, 0, 2, 2] = 6.0
    assert float(focal_loss(good, target)) < 0.01 < float(focal_loss(bad, target))
