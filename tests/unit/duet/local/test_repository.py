"""The local Python-backend repository keeps the cluster config's tensors and batching."""

from __future__ import annotations

import shutil
from pathlib import Path

from duet.local import repository
from models import model_config
from transformers_pre.registry import MODELS

SOURCE = Path(__file__).resolve().parents[4] / "models" / "model_repository"
TRITON_MODELS = [spec.triton_model for spec in MODELS.values()]


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
    served = repository.built_models(repo, TRITON_MODELS)
    assert [m.name for m in served] == [name for name in TRITON_MODELS if name != "sentiment"]


def test_local_config_wraps_onnx_with_the_python_backend(tmp_path: Path) -> None:
    repo = _fake_built(tmp_path / "repo")
    for model_dir in repo.iterdir():
        for side in ("labels.txt", "warmup/input"):
            (model_dir / side).parent.mkdir(exist_ok=True)
            (model_dir / side).write_text(side)
    served = repository.built_models(repo, TRITON_MODELS)
    assert [m.name for m in served] == TRITON_MODELS
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
        # What Triton reads beside the model (labels for `classes`/`logits`, warmup data) travels with it.
        assert repository.triton_side_files(original) == ["labels.txt", "warmup"]
        assert (local / model.name / "labels.txt").read_text() == "labels.txt"
        assert (local / model.name / "warmup" / "input").exists()


def test_int8_variant_is_chosen_only_when_asked_and_present(tmp_path: Path) -> None:
    repo = _fake_built(tmp_path / "repo")
    (repo / "sentiment" / "1" / "model.int8.onnx").write_bytes(b"")
    by_name = {m.name: m for m in repository.built_models(repo, ["sentiment", "mammo_detector"], int8=True)}
    assert by_name["sentiment"].onnx.name == "model.int8.onnx"
    assert by_name["mammo_detector"].onnx.name == "model.onnx"
    assert repository.built_models(repo, ["sentiment"])[0].onnx.name == "model.onnx"
