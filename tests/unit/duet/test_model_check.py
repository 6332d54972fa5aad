"""`duet models check`: real ONNX files run by ONNX Runtime; each broken rule is named, never skipped."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from foreign_detector import write_model_folder

from duet.model_check import check_folder, write_config
from duet.paths import MODEL_REPOSITORY
from models import model_config


def foreign(tmp_path: Path, **breakage: bool) -> Path:
    folder = write_model_folder(tmp_path / "mammo_detector", **breakage)
    write_config(folder)
    return folder


def rules(folder: Path) -> set[str]:
    return {problem.rule for problem in check_folder(folder).problems}


def test_a_foreign_detector_with_its_own_k_fp16_input_and_labels_meets_the_contract(tmp_path: Path) -> None:
    folder = foreign(tmp_path)
    report = check_folder(folder)
    assert report.ok, report.problems
    assert {"run-batch-1", "run-batch-4", "config", "thresholds", "labels"} <= set(report.checked)


def test_write_config_takes_names_datatypes_and_dims_from_the_graph(tmp_path: Path) -> None:
    config = model_config.load(foreign(tmp_path) / "config.pbtxt")
    image = config.input[0]
    assert model_config.datatype_name(image.data_type) == "TYPE_FP16"
    assert list(image.dims) == [3, 96, 80]
    assert {o.name: list(o.dims) for o in config.output}["boxes"] == [7, 4]
    # The shipped warmup image is FP32 1x256x208; this model has none of its size, so Triton must not warm up.
    assert len(config.model_warmup) == 0


@pytest.mark.parametrize(
    ("breakage", "rule"),
    [
        ({"logits": True}, "probabilities"),
        ({"fixed_batch": True}, "batch-axis"),
        ({"unsorted": True}, "scores-sorted"),
        ({"class_overflow": True}, "class-ids"),
    ],
)
def test_each_broken_rule_is_named(tmp_path: Path, breakage: dict[str, bool], rule: str) -> None:
    assert rule in rules(foreign(tmp_path, **breakage))


def test_side_file_schemas_are_checked(tmp_path: Path) -> None:
    folder = foreign(tmp_path)
    (folder / "thresholds.json").write_text(json.dumps({"score": 1.5, "nms": 0.5}))
    (folder / "calibration.json").write_text(json.dumps({"slope": -1.0, "intercept": 0.0}))
    (folder / "labels.txt").write_text("malignant mass\nmalignant mass\n")
    problems = [str(p) for p in check_folder(folder).problems]
    assert any("unknown keys ['nms']" in p for p in problems), problems
    assert any("'score' must be a number in [0, 1]" in p for p in problems), problems
    assert any("slope' must be positive" in p for p in problems), problems
    assert any("single words" in p for p in problems) and any("repeats" in p for p in problems), problems


def test_a_config_that_disagrees_with_the_graph_fails(tmp_path: Path) -> None:
    folder = foreign(tmp_path)
    text = (folder / "config.pbtxt").read_text().replace("dims: 96", "dims: 256", 1)
    (folder / "config.pbtxt").write_text(text)
    problems = check_folder(folder).problems
    assert [p for p in problems if p.rule == "config" and "axis 1" in p.message], problems


def test_a_folder_without_an_onnx_file_fails_rather_than_skips(tmp_path: Path) -> None:
    folder = tmp_path / "mammo_detector"
    folder.mkdir()
    (folder / "config.pbtxt").write_text('name: "mammo_detector"')
    report = check_folder(folder)
    assert not report.ok and report.problems[0].rule == "layout"


@pytest.mark.parametrize("triton_model", ["mammo_detector", "sentiment"])
def test_the_shipped_models_meet_their_contract(tmp_path: Path, triton_model: str) -> None:
    built = MODEL_REPOSITORY / triton_model
    if not (built / "1" / "model.onnx").exists():
        pytest.fail(f"{triton_model} is not built; run `make models`")
    report = check_folder(built)
    assert report.ok, report.problems


def test_the_cli_exits_1_and_names_the_rule(tmp_path: Path) -> None:
    folder = write_model_folder(tmp_path / "mammo_detector", logits=True)
    # The installed console script, as a team runs it.
    command = [str(Path(sys.executable).parent / "duet"), "models", "check", str(folder), "--write-config"]
    completed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "[probabilities] quality must be probabilities" in " ".join(completed.stdout.split())
    shutil.rmtree(folder)
    write_model_folder(folder)
    completed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "meets the contract" in completed.stdout
