"""Every committed config.pbtxt parses against Triton's ModelConfig and matches its ONNX graph."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from models import model_config
from models.model_config import dump_json

REPOSITORY = Path(__file__).resolve().parents[3] / "models" / "model_repository"
CONFIGS = sorted(REPOSITORY.glob("*/config.pbtxt"))
ONNX_TO_TRITON = {
    onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.INT64: "TYPE_INT64",
    onnx.TensorProto.INT32: "TYPE_INT32", onnx.TensorProto.FLOAT16: "TYPE_FP16",
}


def test_both_shipped_models_have_a_config() -> None:
    assert {path.parent.name for path in CONFIGS} >= {"mammo_detector", "sentiment"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.parent.name)
def test_config_parses_in_a_process_without_kserve(path: Path) -> None:
    parsed = dump_json(path)
    assert parsed["platform"] == "onnxruntime_onnx"
    assert int(parsed["max_batch_size"]) > 1
    assert "dynamic_batching" in parsed
    assert parsed["instance_group"][0]["kind"] == "KIND_GPU"


def test_an_unknown_field_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "config.pbtxt"
    bad.write_text(CONFIGS[0].read_text() + "\nmax_batch_sise: 4\n")
    with pytest.raises(ValueError, match="max_batch_sise"):
        dump_json(bad)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.parent.name)
def test_config_tensors_match_the_built_onnx(path: Path) -> None:
    config = model_config.load(path)
    built = sorted((path.parent / "1").glob("*.onnx"))
    if not built:
        pytest.skip(f"{path.parent.name} is not built (make models)")
    for onnx_path in built:
        graph = onnx.load(str(onnx_path), load_external_data=False).graph
        initializers = {init.name for init in graph.initializer}
        for declared, actual in (
            (config.input, [t for t in graph.input if t.name not in initializers]),
            (config.output, list(graph.output)),
        ):
            assert [t.name for t in declared] == [t.name for t in actual], onnx_path.name
            for tensor, value in zip(declared, actual):
                tensor_type = value.type.tensor_type
                triton_type = model_config._model_config_pb2().DataType.Name(tensor.data_type)
                assert triton_type == ONNX_TO_TRITON[tensor_type.elem_type]
                # Triton dims leave out the batch axis.
                assert len(tensor.dims) == len(tensor_type.shape.dim) - 1, (onnx_path.name, tensor.name)
