"""Quality gates: a build whose held-out metrics fall below their floors is not installed.

Floors decide whether a build may be installed, not what is built, so they live here rather than in a recipe:
raising a floor re-checks the cached build instead of retraining it, and `predictors.build.build_model` checks
them on every path (fresh build, cached build, already installed), so a cached build below a new floor fails too.
Full builds have floors set just under the values the shipped recipe measured; quick builds (seconds-long smoke
builds for tests) have low floors that only catch a broken pipeline.

The detector's floors are on its build-time evaluation (`predictors.detector.evaluate`, class-wise NMS IoU 0.5, no
score threshold), not yet on the served post-processing.
"""

from __future__ import annotations

import math
from typing import Any

# model -> "full" | "quick" -> metric -> minimum. Each metric is a key of the card's `metrics`; for a nested one,
# dotted ("recall.positive").
FLOORS: dict[str, dict[str, dict[str, float]]] = {
    "mammo_detector": {
        # Measured by recipe 418a1f0ce7492a7c (torch 2.13): mAP@0.5 0.727 (malignant 0.552, benign 0.741,
        # calcification 0.889), malignancy AUC 0.950, quality accuracy 1.000 on 240 held-out phantoms (181
        # diagnostic). The same source under an earlier torch measured 0.712 (0.510 / 0.770 / 0.855), AUC 0.963:
        # a build is deterministic for one set of package versions, and the floors leave room for that spread.
        "full": {
            "map50": 0.68,
            "ap50_malignant_mass": 0.48,
            "ap50_benign_mass": 0.71,
            "ap50_calcification": 0.83,
            "malignancy_auc": 0.92,
            "quality_accuracy": 0.97,
        },
        "quick": {"quality_accuracy": 0.25},
    },
    "sentiment": {
        # Measured by recipe a4831ec3de475e07 (split by editorial, 903 held-out sentences of 88 editorials):
        # accuracy 0.687, macro-F1 0.675, recall of the weakest class (positive) 0.563; INT8 0.677 / 0.664.
        "full": {
            "accuracy": 0.66,
            "macro_f1": 0.65,
            "recall.positive": 0.53,
            "int8_accuracy": 0.65,
            "int8_macro_f1": 0.64,
        },
        "quick": {"accuracy": 0.2},
    },
}


class QualityGateError(RuntimeError):
    """A build measured below a floor; the message names every metric that failed, its value and its floor."""


def floors_for(model: str, quick: bool) -> dict[str, float]:
    """The floors of `model`'s full or quick build."""
    return dict(FLOORS[model]["quick" if quick else "full"])


def _lookup(metrics: dict[str, Any], name: str) -> Any:
    value: Any = metrics
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def check_gates(model: str, metrics: dict[str, Any], floors: dict[str, float]) -> dict[str, Any]:
    """Compare `metrics` with `floors`; returns the record for the card, or raises `QualityGateError`.

    A metric that is missing, null or NaN fails its gate (a build that cannot show a number does not pass).
    The record: {"floors": {...}, "measured": {...}, "passed": True}.
    """
    measured: dict[str, float | None] = {}
    failures: list[str] = []
    for name, floor in floors.items():
        value = _lookup(metrics, name)
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        if number is not None and math.isnan(number):
            number = None
        measured[name] = number
        if number is None:
            failures.append(f"{name} was not measured (floor {floor:g})")
        elif number < floor:
            failures.append(f"{name} {number:.4f} is below its floor {floor:g}")
    if failures:
        raise QualityGateError(f"{model}: quality gate failed: " + "; ".join(failures))
    return {"floors": dict(floors), "measured": measured, "passed": True}


def gates_markdown(record: dict[str, Any]) -> str:
    """The card README's section for a gate record."""
    rows = "\n".join(
        f"| {name} | {floor:g} | {record['measured'][name]:.4f} |" for name, floor in record["floors"].items()
    )
    return "## Quality gates\n\nThe build is only installed when every metric reaches its floor.\n\n" \
        "| metric | floor | measured |\n|---|---|---|\n" + rows + "\n"
