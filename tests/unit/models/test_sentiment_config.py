"""The committed Triton config for `sentiment` parses as Triton's ModelConfig, with TensorRT off by default and the
documented TensorRT FP16 block valid when switched on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from models.model_config import dump_json

CONFIG = Path(__file__).parents[3] / "models" / "model_repository" / "sentiment" / "config.pbtxt"


def _parse(text: str, tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "config.pbtxt"
    path.write_text(text)
    return dump_json(path)


def _tensorrt_block(text: str) -> str:
    match = re.search(r"^# BEGIN tensorrt_fp16\n(.*?)^# END tensorrt_fp16$", text, re.DOTALL | re.MULTILINE)
    assert match, "the TensorRT block must be documented between BEGIN/END lines"
    return "\n".join(line.removeprefix("# ").removeprefix("#") for line in match.group(1).splitlines())


def test_config_parses_with_the_contract_and_serving_settings() -> None:
    config = dump_json(CONFIG)
    assert config["name"] == "sentiment"
    assert config["platform"] == "onnxruntime_onnx"
    assert config["default_model_filename"] == "model.onnx"
    assert config["max_batch_size"] == 64
    assert config["version_policy"] == {"latest": {"num_versions": 1}}
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [
        ("input_ids", "TYPE_INT64", ["-1"]),
        ("attention_mask", "TYPE_INT64", ["-1"]),
    ]
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["output"]] == [
        ("logits", "TYPE_FP32", ["3"])
    ]
    assert config["output"][0]["label_filename"] == "labels.txt"
    assert config["instance_group"] == [{"kind": "KIND_GPU", "count": 1}]


def test_dynamic_batching_sends_at_once_and_leaves_the_queue_bound_to_the_transformer() -> None:
    batching = dump_json(CONFIG)["dynamic_batching"]
    # A single headline must not wait for company: no delay, no preferred sizes to wait for.
    assert int(batching.get("max_queue_delay_microseconds", 0)) == 0
    assert not batching.get("preferred_batch_size")
    # A queue timeout stalls Triton's batcher (triton-inference-server/server#8870): the transformer's
    # admission bound (DUET_MAX_INFLIGHT_REQUESTS, 429 + Retry-After) is the queue bound instead.
    assert "default_queue_policy" not in batching
    from transformers_pre.settings import Settings

    assert Settings().max_inflight_requests >= 64  # c=64 single-headline clients are admitted, never refused


def test_warmup_reads_both_inputs_from_files() -> None:
    config = dump_json(CONFIG)
    assert config["model_warmup"]
    for warmup in config["model_warmup"]:
        assert set(warmup["inputs"]) == {"input_ids", "attention_mask"}
        for spec in warmup["inputs"].values():
            assert spec["data_type"] == "TYPE_INT64"
            assert spec["input_data_file"] in {"input_ids", "attention_mask"}
            assert len(spec["dims"]) == 1 and int(spec["dims"][0]) > 0


def test_tensorrt_is_off_by_default_and_its_documented_block_is_valid(tmp_path: Path) -> None:
    text = CONFIG.read_text()
    assert "optimization" not in dump_json(CONFIG)
    switched_on = _parse(text + "\n" + _tensorrt_block(text), tmp_path)
    accelerators = switched_on["optimization"]["execution_accelerators"]["gpu_execution_accelerator"]
    assert [a["name"] for a in accelerators] == ["tensorrt"]
    parameters = accelerators[0]["parameters"]
    assert parameters["precision_mode"] == "FP16"
    assert parameters["trt_engine_cache_enable"] == "1" and parameters["trt_engine_cache_path"]
    for bound in ("min", "opt", "max"):
        shapes = dict(item.split(":") for item in parameters[f"trt_profile_{bound}_shapes"].split(","))
        assert set(shapes) == {"input_ids", "attention_mask"}
    batch, length = map(
        int, shapes["input_ids"].split("x")
    )  # the max profile covers every batch Triton forms
    assert batch == switched_on["max_batch_size"] and length == 64
