"""The committed config variants (TensorRT FP16, CPU) parse, match their derivation and differ only as meant."""

from __future__ import annotations

from pathlib import Path

import pytest

from models import config_variants, model_config

MODELS = sorted(p.parent for p in config_variants.REPOSITORY.glob("*/config.pbtxt"))


@pytest.mark.parametrize("model_dir", MODELS, ids=lambda p: p.name)
def test_committed_variants_are_up_to_date(model_dir: Path) -> None:
    for path, text in config_variants.expected(model_dir).items():
        assert path.exists(), f"{path} missing: run python -m models.config_variants"
        assert path.read_text() == text, f"{path} drifted: run python -m models.config_variants"


@pytest.mark.parametrize("model_dir", MODELS, ids=lambda p: p.name)
def test_variants_change_only_the_accelerator_or_the_instances(model_dir: Path) -> None:
    base = model_config.load(model_dir / "config.pbtxt")
    trt = model_config.load(model_dir / "configs" / "tensorrt_fp16.pbtxt")
    cpu = model_config.load(model_dir / "configs" / "cpu.pbtxt")
    accelerators = trt.optimization.execution_accelerators.gpu_execution_accelerator
    assert [a.name for a in accelerators] == ["tensorrt"]
    assert accelerators[0].parameters["precision_mode"] == "FP16"
    assert not base.optimization.execution_accelerators.gpu_execution_accelerator
    assert [g.kind for g in cpu.instance_group] == [cpu.instance_group[0].KIND_CPU]
    for variant in (trt, cpu):
        assert variant.input == base.input and variant.output == base.output
        assert variant.dynamic_batching == base.dynamic_batching
        assert variant.max_batch_size == base.max_batch_size


def test_a_config_without_the_block_is_refused() -> None:
    with pytest.raises(ValueError, match="BEGIN tensorrt_fp16"):
        config_variants.tensorrt_fp16('platform: "onnxruntime_onnx"\n')
