"""Quality gates fail a build below its floors, before it is installed, for fresh, cached and installed builds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from rich.progress import Progress

from models.build import STAMP, build_model, recipe_hash
from models.gates import FLOORS, QualityGateError, ceilings_for, check_gates, floors_for, gates_markdown
from transformers_pre.registry import MODELS

SENTIMENT_BUILDER = MODELS["sentiment"].builder

# What the shipped detector recipe measured through the served pipeline (its card), the values the full floors
# sit just under.
DETECTOR_MEASURED = {
    "map50": 0.4969,
    "ap50_malignant_mass": 0.3342,
    "ap50_benign_mass": 0.5598,
    "ap50_calcification": 0.5967,
    "malignancy_auc": 0.8814,
    "risk_auc": 0.8635,
    "quality_accuracy": 0.986,
    "quality_auc": 0.9993,
    "risk_ece": 0.071,
    "map50_reduced_minus_full": -0.0158,
    "risk_auc_reduced_minus_full": 0.0011,
}
# The same recipe rebuilt with the package versions of 2026-12-06 (recipe hash 49fe376395bd0862).
DETECTOR_REBUILT = {
    "map50": 0.5065,
    "ap50_malignant_mass": 0.2997,
    "ap50_benign_mass": 0.5766,
    "ap50_calcification": 0.6432,
    "malignancy_auc": 0.8664,
    "risk_auc": 0.8552,
    "quality_accuracy": 0.982,
    "quality_auc": 0.9990,
    "risk_ece": 0.0818,
    "map50_reduced_minus_full": 0.0069,
    "risk_auc_reduced_minus_full": -0.0059,
}
FLOORED = {name: value for name, value in DETECTOR_MEASURED.items() if name in FLOORS["mammo_detector"]["full"]}


def test_every_model_has_full_and_quick_floors_and_quick_ones_are_lower() -> None:
    assert set(FLOORS) == {spec.triton_model for spec in MODELS.values()}
    for model, modes in FLOORS.items():
        assert set(modes) == {"full", "quick"} and modes["full"] and modes["quick"], model
        for name, floor in modes["quick"].items():
            assert floor <= modes["full"].get(name, math.inf), (model, name)


def test_todays_detector_passes_its_full_floors_with_little_room() -> None:
    """Both measured builds pass, and each floor sits just under the weaker of the two."""
    record = check_gates("mammo_detector", DETECTOR_MEASURED, floors_for("mammo_detector", quick=False),
                         ceilings_for("mammo_detector", quick=False))
    assert record["passed"] and {k: record["measured"][k] for k in FLOORED} == FLOORED
    rebuilt = check_gates("mammo_detector", DETECTOR_REBUILT, floors_for("mammo_detector", quick=False),
                          ceilings_for("mammo_detector", quick=False))
    assert rebuilt["passed"]
    for name, floor in record["floors"].items():
        weaker = min(DETECTOR_MEASURED[name], DETECTOR_REBUILT[name])
        assert 0 < weaker - floor <= 0.035, name
    assert record["measured"]["|map50_reduced_minus_full|"] == pytest.approx(0.0158)


def test_a_detector_above_a_ceiling_fails_naming_it() -> None:
    # Issue 10's bound on the reduced JPEG 2000 path, and issue 12's on the calibration error.
    worse = {**DETECTOR_MEASURED, "map50_reduced_minus_full": -0.031, "risk_ece": 0.14}
    with pytest.raises(QualityGateError) as error:
        check_gates("mammo_detector", worse, floors_for("mammo_detector", quick=False),
                    ceilings_for("mammo_detector", quick=False))
    message = str(error.value)
    assert "|map50_reduced_minus_full| 0.0310 is above its ceiling 0.02" in message
    assert "risk_ece 0.1400 is above its ceiling 0.1" in message
    assert "|risk_auc_reduced_minus_full|" not in message and "below its floor" not in message


def test_a_detector_below_its_map_floor_fails_naming_metric_value_and_floor() -> None:
    worse = {**DETECTOR_MEASURED, "map50": 0.41, "ap50_malignant_mass": 0.25}
    with pytest.raises(QualityGateError) as error:
        check_gates("mammo_detector", worse, floors_for("mammo_detector", quick=False))
    message = str(error.value)
    assert message.startswith("mammo_detector: quality gate failed")
    assert "map50 0.4100 is below its floor 0.47" in message
    assert "ap50_malignant_mass 0.2500 is below its floor 0.28" in message
    assert "quality_accuracy" not in message


@pytest.mark.parametrize("value", [None, float("nan"), "0.9", True])
def test_a_metric_that_was_not_measured_fails(value: object) -> None:
    with pytest.raises(QualityGateError, match="malignancy_auc was not measured"):
        check_gates("mammo_detector", {**DETECTOR_MEASURED, "malignancy_auc": value},
                    floors_for("mammo_detector", quick=False))


def test_nested_metrics_are_named_with_dots() -> None:
    metrics = {"recall": {"negative": 0.7, "positive": 0.2}}
    assert check_gates("sentiment", metrics, {"recall.negative": 0.5})["measured"] == {"recall.negative": 0.7}
    with pytest.raises(QualityGateError, match="recall.positive 0.2000 is below its floor 0.3"):
        check_gates("sentiment", metrics, {"recall.positive": 0.3})


def _cached_build(cache: Path, metrics: dict) -> str:
    """A cache entry for the quick sentiment recipe, as a finished build leaves it."""
    from models.sentiment.build import recipe

    stamp = f"sentiment-quick-{recipe_hash(SENTIMENT_BUILDER, recipe(quick=True))}"
    folder = cache / "models" / stamp
    (folder / "1").mkdir(parents=True)
    (folder / "1" / "model.onnx").write_bytes(b"onnx bytes")
    (folder / "card.json").write_text(json.dumps({"model": "sentiment", "metrics": metrics}))
    (folder / "README.md").write_text("# sentiment model card\n")
    (folder / STAMP).write_text(stamp + "\n")
    return stamp


def test_a_cached_build_below_its_floor_is_not_installed(tmp_path: Path) -> None:
    _cached_build(tmp_path / "cache", {"accuracy": 0.55})
    repository = tmp_path / "repository"
    with Progress(disable=True) as progress, pytest.raises(QualityGateError, match="accuracy 0.5500 is below"):
        build_model("sentiment", repository, tmp_path / "cache", progress, builder=SENTIMENT_BUILDER,
                    quick=True, say=lambda _: None, floors={"accuracy": 0.6})
    assert not (repository / "sentiment" / "1" / "model.onnx").exists()


def test_a_passing_build_is_installed_with_its_gates_on_the_card_and_rechecked_later(tmp_path: Path) -> None:
    stamp = _cached_build(tmp_path / "cache", {"accuracy": 0.55})
    repository = tmp_path / "repository"
    with Progress(disable=True) as progress:
        card = build_model("sentiment", repository, tmp_path / "cache", progress, builder=SENTIMENT_BUILDER,
                           quick=True, say=lambda _: None, floors={"accuracy": 0.5})
        model_dir = repository / "sentiment"
        assert (model_dir / STAMP).read_text().strip() == stamp
        assert (model_dir / "1" / "model.onnx").read_bytes() == b"onnx bytes"
        expected = {"floors": {"accuracy": 0.5}, "measured": {"accuracy": 0.55}, "passed": True}
        assert card["quality_gates"] == expected
        assert json.loads((model_dir / "card.json").read_text())["quality_gates"] == expected
        readme = (model_dir / "README.md").read_text()
        assert readme.count("## Quality gates") == 1 and "| accuracy | 0.5 | 0.5500 |" in readme
        # Already installed, then a floor is raised: the installed build fails too.
        with pytest.raises(QualityGateError, match="accuracy"):
            build_model("sentiment", repository, tmp_path / "cache", progress, builder=SENTIMENT_BUILDER,
                        quick=True, say=lambda _: None, floors={"accuracy": 0.56})
        again = build_model("sentiment", repository, tmp_path / "cache", progress, builder=SENTIMENT_BUILDER,
                            quick=True, say=lambda _: None, floors={"accuracy": 0.52})
    assert again["quality_gates"]["floors"] == {"accuracy": 0.52}
    assert (model_dir / "README.md").read_text().count("## Quality gates") == 1


def test_gates_markdown_lists_each_floor() -> None:
    record = check_gates("mammo_detector", DETECTOR_MEASURED, floors_for("mammo_detector", quick=False))
    text = gates_markdown(record)
    assert text.count("\n| ") == 1 + len(record["floors"]) and "| map50 | 0.47 | 0.4969 |" in text


def test_duet_models_build_exits_1_naming_the_failing_metric(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from duet.cli import app

    _cached_build(tmp_path / "cache", {"accuracy": 0.15})
    monkeypatch.setenv("DUET_CACHE_DIR", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["models", "build", "--only", "sentiment", "--quick",
                                      "--out", str(tmp_path / "repository")])
    assert result.exit_code == 1
    assert "sentiment: quality gate failed: accuracy 0.1500 is below its floor" in " ".join(result.output.split())
    assert not (tmp_path / "repository" / "sentiment" / "1" / "model.onnx").exists()
