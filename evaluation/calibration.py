"""Platt scaling of the study risk, expected calibration error and the reliability diagram.

The calibration's format and its application live in the transformer (`transformers_pre.dicom.findings.
RiskCalibration`); this module only fits it and measures how well probabilities match frequencies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from transformers_pre.dicom.findings import RiskCalibration

ECE_BINS = 10
_EPSILON = 1e-6


def _logit(probability: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(probability, dtype=np.float64), _EPSILON, 1.0 - _EPSILON)
    return np.log(clipped) - np.log1p(-clipped)


def fit_platt(raw_risk: np.ndarray, truth: np.ndarray) -> RiskCalibration:
    """Logistic regression of the truth (0/1) on logit(raw risk), unregularised: P(y=1) = sigmoid(a logit + b).

    Raises ValueError when the split holds one class only (nothing to calibrate against).
    """
    truth = np.asarray(truth).astype(int)
    if len(np.unique(truth)) < 2:
        raise ValueError("the calibration split holds studies of one class only")
    model = LogisticRegression(C=1e6, max_iter=1000)
    model.fit(_logit(raw_risk)[:, None], truth)
    return RiskCalibration(slope=float(model.coef_[0, 0]), intercept=float(model.intercept_[0]))


def reliability_bins(probability: np.ndarray, truth: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """Equal-width bins over [0, 1] (the last one closed): count, mean predicted probability, observed frequency.

    Empty bins are listed with count 0 and null means.
    """
    probability = np.asarray(probability, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    index = np.minimum((probability * bins).astype(int), bins - 1)
    table = []
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        table.append({
            "lower": b / bins,
            "upper": (b + 1) / bins,
            "count": count,
            "mean_predicted": float(probability[members].mean()) if count else None,
            "observed": float(truth[members].mean()) if count else None,
        })
    return table


def expected_calibration_error(probability: np.ndarray, truth: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: sum over equal-width bins of (share of studies in the bin) x |observed frequency - mean probability|."""
    total = len(probability)
    if total == 0:
        return float("nan")
    return float(sum(
        row["count"] / total * abs(row["observed"] - row["mean_predicted"])
        for row in reliability_bins(probability, truth, bins) if row["count"]
    ))


def plot_reliability(curves: dict[str, list[dict[str, Any]]], path: Path, title: str) -> None:
    """Reliability diagram (observed frequency against mean predicted probability per bin, the diagonal being
    perfect calibration) with the studies per bin below; `curves` maps a legend label to `reliability_bins`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(5.5, 6.5), height_ratios=[3, 1], sharex=True)
    top.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect calibration")
    width = 1.0 / max(len(next(iter(curves.values()))), 1)
    for offset, (label, table) in enumerate(curves.items()):
        filled = [row for row in table if row["count"]]
        top.plot([row["mean_predicted"] for row in filled], [row["observed"] for row in filled], marker="o",
                 label=label)
        shift = (offset - (len(curves) - 1) / 2) * width / (len(curves) + 1)
        bottom.bar([(row["lower"] + row["upper"]) / 2 + shift for row in table], [row["count"] for row in table],
                   width=width / (len(curves) + 1), label=label)
    top.set_ylabel("observed frequency of malignancy")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_title(title, fontsize=10)
    top.legend(loc="upper left", fontsize=8)
    bottom.set_xlabel("predicted study risk (bin of width 0.1)")
    bottom.set_ylabel("studies")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    """`python -m evaluation.calibration CARD PNG`: draw the reliability diagram of a detector card's held-out
    study risks (`metrics.risk_reliability`, written by `evaluation.served`)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("card", type=Path, help="card.json of a built mammo_detector")
    parser.add_argument("png", type=Path, help="where to write the diagram")
    args = parser.parse_args(argv)
    metrics = json.loads(args.card.read_text())["metrics"]
    curves = metrics["risk_reliability"]
    title = (f"Study risk, {metrics['studies'] - metrics['refused_studies']} held-out synthetic studies\n"
             f"ECE {metrics['risk_ece']:.3f} calibrated, {metrics['risk_ece_uncalibrated']:.3f} uncalibrated")
    plot_reliability({"calibrated (Platt)": curves["calibrated"], "uncalibrated": curves["uncalibrated"]},
                     args.png, title)


if __name__ == "__main__":
    main()
