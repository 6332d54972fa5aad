"""Platt scaling recovers a known miscalibration; ECE and the reliability bins measure it; the diagram is drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluation.calibration import (
    expected_calibration_error,
    fit_platt,
    plot_reliability,
    reliability_bins,
)


def _miscalibrated(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw risks that are overconfident (true P = sigmoid(0.5 logit(raw) - 0.4)), the truth drawn from the true P."""
    rng = np.random.default_rng(seed)
    raw = rng.uniform(0.01, 0.99, count)
    logit = np.log(raw / (1 - raw))
    truth_probability = 1 / (1 + np.exp(-(0.5 * logit - 0.4)))
    return raw, rng.random(count) < truth_probability, truth_probability


def test_platt_recovers_slope_and_intercept() -> None:
    raw, truth, _ = _miscalibrated(20_000)
    calibration = fit_platt(raw, truth)
    assert calibration.slope == pytest.approx(0.5, abs=0.05)
    assert calibration.intercept == pytest.approx(-0.4, abs=0.06)


def test_calibration_lowers_the_ece_of_an_overconfident_risk() -> None:
    raw, truth, _ = _miscalibrated(4000, seed=1)
    calibration = fit_platt(raw, truth)
    held_raw, held_truth, _ = _miscalibrated(4000, seed=2)
    before = expected_calibration_error(held_raw, held_truth)
    after = expected_calibration_error(calibration.apply(held_raw), held_truth)
    assert before > 0.1 and after < 0.04 and after < before / 3


def test_ece_of_known_bins() -> None:
    # Bin [0.2, 0.3): 2 studies at 0.25, one positive (observed 0.5): |0.5 - 0.25| = 0.25 with weight 2/4.
    # Bin [0.9, 1.0]: 2 studies at 1.0 (the last bin is closed), both positive: 0.
    probability = np.array([0.25, 0.25, 1.0, 1.0])
    truth = np.array([1, 0, 1, 1])
    assert expected_calibration_error(probability, truth) == pytest.approx(0.125)
    bins = reliability_bins(probability, truth)
    assert len(bins) == 10 and sum(row["count"] for row in bins) == 4
    assert bins[2] == {"lower": 0.2, "upper": 0.3, "count": 2, "mean_predicted": 0.25, "observed": 0.5}
    assert bins[9]["count"] == 2 and bins[0]["mean_predicted"] is None


def test_one_class_split_cannot_be_calibrated() -> None:
    with pytest.raises(ValueError, match="one class"):
        fit_platt(np.array([0.2, 0.4]), np.array([0, 0]))


def test_reliability_diagram_is_a_png(tmp_path: Path) -> None:
    raw, truth, _ = _miscalibrated(500)
    path = tmp_path / "reliability.png"
    plot_reliability({"uncalibrated": reliability_bins(raw, truth),
                      "calibrated": reliability_bins(fit_platt(raw, truth).apply(raw), truth)}, path, "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
