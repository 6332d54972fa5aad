"""The local Python-backend repository keeps the cluster config's tensors and batching."""

from __future__ import annotations

import shutil
from pathlib import Path

from duet.local import repository
from predictors import model_config

SOURCE = Path(__file__).resolve().parents[3] / "predictors" / "model_repository"


def _fake_built(tmp_path: Path) -> Path:
    """A copy of the committed configs with placeholder ONNX files (only paths are used here)."""
    for config in SOURCE.glob("*/config.pbtxt"):
        target = tmp_path / config.parent.name
        (target / "1").mkdir(parents=True)
        shutil.copy(config, target / "config.pbtxt")
        (target / "1" / "model.onnx").write_bytes(b"")
    return tmp_path


def test_only_built_models_are_served(tmp_path: Path) -> None:
    repo = _fake_built(tmp_path / "repo")
    (repo / "sentiment" / "1" / "model.onnx").unlink()
    served = repository.built_models(repo, ["mammo_detector", "sentiment"])
    assert [m.name for m in served] == ["mammo_detector"]


def test_local_config_wraps_onnx_with_the_python_backend(tmp_path: Path) -> None:
    repo = _fake_built(tmp_path / "repo")
    served = repository.built_models(repo, ["mammo_detector", "sentiment"])
    local = repository.write_local_repository(repo, tmp_path / "local", served, threads=2)
    for model in served:
        original = model_config.load(repo / model.name / "config.pbtxt")
        wrapped = model_config.load(local / model.name / "config.pbtxt")
        assert wrapped.backend == "python" and wrapped.platform == ""
        assert (local / model.name / "1" / "model.py").exists()
        assert wrapped.input == original.input and wrapped.output == original.output
        assert wrapped.max_batch_size == original.max_batch_size == model.max_batch_size
        assert wrapped.dynamic_batching == original.dynamic_batching
        assert [g.kind for g in wrapped.instance_group] == [wrapped.instance_group[0].KIND_CPU]
        assert wrapped.parameters["onnx_model"].string_value == str(model.onnx.resolve())


def test_int8_variant_is_chosen_only_when_asked_and_present(tmp_path: Path) -> None:
    repo = _fake_built(tmp_path / "repo")
    (repo / "sentiment" / "1" / "model.int8.onnx").write_bytes(b"")
    by_name = {m.name: m for m in repository.built_models(repo, ["sentiment", "mammo_detector"], int8=True)}
    assert by_name["sentiment"].onnx.name == "model.int8.onnx"
    assert by_name["mammo_detector"].onnx.name == "model.onnx"
    assert repository.built_models(repo, ["sentiment"])[0].onnx.name == "model.onnx"
