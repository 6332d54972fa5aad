"""Recipe hashes: stable for an unchanged recipe, different for any change; install keeps the config."""

from __future__ import annotations

from pathlib import Path

from models.build import STAMP, _install, recipe_hash


def test_recipe_hash_is_stable_and_sensitive() -> None:
    recipe = {"seed": 0, "steps": 100, "lr": 1e-3}
    sentiment = "models.sentiment"
    assert recipe_hash(sentiment, recipe) == recipe_hash(sentiment, dict(reversed(list(recipe.items()))))
    assert recipe_hash(sentiment, recipe) != recipe_hash(sentiment, {**recipe, "steps": 101})
    assert recipe_hash(sentiment, recipe) != recipe_hash("models.detector", recipe)


def test_install_replaces_built_files_and_keeps_the_config(tmp_path: Path) -> None:
    model_dir = tmp_path / "repo" / "sentiment"
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "config.pbtxt").write_text("platform: \"onnxruntime_onnx\"\n")
    (model_dir / "1" / "stale.onnx").write_bytes(b"old")
    built = tmp_path / "cache" / "sentiment-abc"
    (built / "1").mkdir(parents=True)
    (built / "1" / "model.onnx").write_bytes(b"new")
    (built / "labels.txt").write_text("negative\nneutral\npositive\n")
    (built / STAMP).write_text("sentiment-abc\n")
    _install(built, model_dir, "sentiment-abc")
    assert (model_dir / "config.pbtxt").read_text().startswith("platform")
    assert not (model_dir / "1" / "stale.onnx").exists()
    assert (model_dir / "1" / "model.onnx").read_bytes() == b"new"
    assert (model_dir / STAMP).read_text().strip() == "sentiment-abc"


def test_install_elsewhere_brings_the_committed_config(tmp_path: Path) -> None:
    built = tmp_path / "cache" / "sentiment-abc"
    (built / "1").mkdir(parents=True)
    (built / "1" / "model.onnx").write_bytes(b"new")
    model_dir = tmp_path / "elsewhere" / "sentiment"
    _install(built, model_dir, "sentiment-abc")
    committed = Path(__file__).resolve().parents[3] / "models" / "model_repository" / "sentiment" / "config.pbtxt"
    assert (model_dir / "config.pbtxt").read_text() == committed.read_text()
