"""A quick detector build (a few dozen steps) produces every artifact, and its ONNX meets the predictor contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from rich.progress import Progress

from models.detector.build import VERIFY_BATCHES, build, recipe
from models.detector.phantom import CLASS_NAMES

OUTPUTS = {
    "boxes": ("tensor(float)", lambda k: [k, 4]),
    "scores": ("tensor(float)", lambda k: [k]),
    "classes": ("tensor(int64)", lambda k: [k]),
    "malignancy": ("tensor(float)", lambda k: [1]),
    "quality": ("tensor(float)", lambda k: [1]),
}


@pytest.fixture(scope="module")
def quick_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    model_dir = tmp_path_factory.mktemp("repo") / "mammo_detector"
    quick = recipe(quick=True)
    quick["threads"] = 1
    with Progress(disable=True) as progress:
        metrics = build(model_dir, quick, progress)
    return model_dir, quick, metrics


def test_recipes_are_json_and_quick_is_short() -> None:
    full, quick = recipe(), recipe(quick=True)
    assert json.loads(json.dumps(full)) == full
    assert quick["steps"] < 100 <= full["steps"]
    assert full["seed"] != full["verify_seed"]
    assert full["verify_images"] >= max(VERIFY_BATCHES)
    served = full["served_evaluation"]
    assert served["held_out_studies"] >= 200 and served["calibration_studies"] >= 400
    assert quick["served_evaluation"]["held_out_studies"] < served["held_out_studies"]
    assert full["input_height"] > full["input_width"]
    assert full["input_height"] % 16 == 0 and full["input_width"] % 16 == 0


@pytest.mark.slow
def test_quick_build_writes_every_artifact(quick_build: tuple[Path, dict, dict]) -> None:
    model_dir, quick, metrics = quick_build
    for name in ("1/model.onnx", "labels.txt", "thresholds.json", "warmup/image", "card.json", "README.md"):
        assert (model_dir / name).is_file(), name
    assert not (model_dir / "config.pbtxt").exists()
    assert (model_dir / "labels.txt").read_text().splitlines() == list(CLASS_NAMES)
    thresholds = json.loads((model_dir / "thresholds.json").read_text())
    assert set(thresholds) == {"score", "quality", "nms_iou"}
    assert all(0 < value < 1 for value in thresholds.values())
    height, width = quick["input_height"], quick["input_width"]
    warmup = np.frombuffer((model_dir / "warmup" / "image").read_bytes(), "<f4")
    assert warmup.size == height * width
    assert 0.0 <= warmup.min() and warmup.max() <= 1.0 and warmup.std() > 0.05  # a real phantom, not zeros
    card = json.loads((model_dir / "card.json").read_text())
    assert "NO CLINICAL VALIDITY" in card["clinical_validity"]
    assert card["recipe"] == quick and card["seed"] == quick["seed"]
    assert set(card["artifacts"]) >= {"1/model.onnx", "labels.txt", "thresholds.json", "warmup/image"}
    assert card["packages"]["torch"] != "absent"
    for key in ("train_seconds", "build_seconds", "params"):
        assert key in card["metrics"] and card["metrics"][key] == metrics[key]
    # Held-out metrics are the served evaluation's (evaluation.served), never the build's own.
    assert "map50" not in card["metrics"] and "evaluated_with" not in card["metrics"]
    assert 100_000 < metrics["params"] < 1_000_000
    assert "NO CLINICAL VALIDITY" in (model_dir / "README.md").read_text()
    verification = card["verification"]["max_abs_diff_by_batch"]
    assert set(verification) == {"1", "3", "8"}
    assert all(diffs["scores"] <= 1e-4 and diffs["boxes"] <= 1e-4 for diffs in verification.values())


@pytest.mark.slow
def test_onnx_contract_names_dtypes_shapes(quick_build: tuple[Path, dict, dict]) -> None:
    model_dir, quick, _ = quick_build
    session = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    (image,) = session.get_inputs()
    assert image.name == "image" and image.type == "tensor(float)"
    assert image.shape[1:] == [1, quick["input_height"], quick["input_width"]]
    assert isinstance(image.shape[0], str)  # symbolic, dynamic batch axis
    outputs = {o.name: o for o in session.get_outputs()}
    assert list(outputs) == list(OUTPUTS)
    for name, (dtype, tail) in OUTPUTS.items():
        assert outputs[name].type == dtype, name
        assert isinstance(outputs[name].shape[0], str), name
        assert outputs[name].shape[1:] == tail(quick["top_k"]), name


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 3, 8])
def test_onnx_runs_at_batch(quick_build: tuple[Path, dict, dict], batch: int) -> None:
    model_dir, quick, _ = quick_build
    height, width, k = quick["input_height"], quick["input_width"], quick["top_k"]
    session = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    warmup = np.frombuffer((model_dir / "warmup" / "image").read_bytes(), "<f4").reshape(1, 1, height, width)
    rng = np.random.default_rng(batch)
    images = np.concatenate([warmup, rng.random((batch - 1, 1, height, width), dtype=np.float32)])
    boxes, scores, classes, malignancy, quality = session.run(None, {"image": images})
    assert boxes.shape == (batch, k, 4) and boxes.dtype == np.float32
    assert scores.shape == (batch, k) and scores.dtype == np.float32
    assert classes.shape == (batch, k) and classes.dtype == np.int64
    assert malignancy.shape == (batch, 1) and quality.shape == (batch, 1)
    assert (np.diff(scores, axis=1) <= 0).all(), "scores must be sorted descending"
    assert ((scores >= 0) & (scores <= 1)).all()
    assert ((malignancy >= 0) & (malignancy <= 1)).all() and ((quality >= 0) & (quality <= 1)).all()
    assert set(np.unique(classes)) <= set(range(len(CLASS_NAMES)))
    assert (boxes[..., 0] >= 0).all() and (boxes[..., 1] >= 0).all()
    assert (boxes[..., 2] <= width).all() and (boxes[..., 3] <= height).all()
    assert (boxes[..., 2] >= boxes[..., 0]).all() and (boxes[..., 3] >= boxes[..., 1]).all()
    # Each image is decoded on its own: the first image's detections do not depend on the rest of the batch.
    alone = session.run(None, {"image": images[:1]})
    np.testing.assert_allclose(alone[1][0], scores[0], atol=1e-5)


@pytest.mark.slow
def test_a_build_without_the_served_evaluation_fails_its_gate(quick_build: tuple[Path, dict, dict]) -> None:
    from models.gates import QualityGateError, check_gates, floors_for

    _, _, metrics = quick_build
    with pytest.raises(QualityGateError, match="quality_accuracy was not measured"):
        check_gates("mammo_detector", metrics, floors_for("mammo_detector", quick=True))
