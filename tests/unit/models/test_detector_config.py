"""The committed Triton config for mammo_detector parses as Triton's ModelConfig and matches the build recipe.

`tritonclient.grpc` cannot share a process with `kserve` (duplicate protobuf symbols, docs/architecture.md), so the
protobuf parsing runs in a child interpreter that prints the parsed config as JSON.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from models.detector.build import recipe

CONFIG = Path(__file__).parents[3] / "models" / "model_repository" / "mammo_detector" / "config.pbtxt"

_PARSE = """
import json, sys
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2
parsed = [text_format.Parse(text, model_config_pb2.ModelConfig()) for text in json.load(sys.stdin)]
print(json.dumps([json_format.MessageToDict(c, preserving_proto_field_name=True) for c in parsed]))
"""


def _switched_on(text: str) -> str:
    """The config with the documented TensorRT block (between BEGIN/END tensorrt_fp16) uncommented, appended."""
    block = re.search(
        r"^# BEGIN tensorrt_fp16\n(.*?)^# END tensorrt_fp16$", text, flags=re.DOTALL | re.MULTILINE
    )
    assert block, "the TensorRT block must stay documented at the top of config.pbtxt"
    return text + "\n" + "".join(line.removeprefix("# ") for line in block.group(1).splitlines(True))


@pytest.fixture(scope="module")
def parsed() -> tuple[dict, dict]:
    """(committed config, same config with TensorRT switched on), parsed by Triton's ModelConfig protobuf."""
    # Only look for the package: importing tritonclient.grpc here would clash with kserve in this process.
    if importlib.util.find_spec("tritonclient") is None:
        pytest.skip("tritonclient is not installed")
    text = CONFIG.read_text()
    done = subprocess.run(
        [sys.executable, "-c", _PARSE],
        input=json.dumps([text, _switched_on(text)]),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    committed, switched_on = json.loads(done.stdout)
    return committed, switched_on


@pytest.fixture(scope="module")
def config(parsed: tuple[dict, dict]) -> dict:
    return parsed[0]


def test_platform_batching_and_version_policy(config: dict) -> None:
    assert config["name"] == "mammo_detector"
    assert config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] >= 8
    assert config["version_policy"] == {"latest": {"num_versions": 1}}
    batching = config["dynamic_batching"]
    assert all(1 <= size <= config["max_batch_size"] for size in batching["preferred_batch_size"])
    assert 0 < int(batching["max_queue_delay_microseconds"]) <= 10_000
    # The queue is bounded by the transformer (DUET_MAX_INFLIGHT_STUDIES): a queue timeout stalls Triton's
    # batcher (triton-inference-server/server#8870).
    assert "default_queue_policy" not in batching
    assert config["instance_group"] == [{"kind": "KIND_GPU", "count": 1}]
    assert "optimization" not in config  # TensorRT is off by default


def test_tensors_match_the_contract_and_recipe(config: dict) -> None:
    full = recipe()
    height, width, k = full["input_height"], full["input_width"], full["top_k"]
    inputs = {t["name"]: (t["data_type"], [int(d) for d in t["dims"]]) for t in config["input"]}
    assert inputs == {"image": ("TYPE_FP32", [1, height, width])}
    outputs = {t["name"]: (t["data_type"], [int(d) for d in t["dims"]]) for t in config["output"]}
    assert outputs == {
        "boxes": ("TYPE_FP32", [k, 4]),
        "scores": ("TYPE_FP32", [k]),
        "classes": ("TYPE_INT64", [k]),
        "malignancy": ("TYPE_FP32", [1]),
        "quality": ("TYPE_FP32", [1]),
    }
    labelled = {t["name"]: t.get("label_filename") for t in config["output"] if t.get("label_filename")}
    assert labelled == {"classes": "labels.txt"}


def test_warmup_uses_the_built_phantom_file(config: dict) -> None:
    full = recipe()
    samples = config["model_warmup"]
    assert {s["batch_size"] for s in samples} == {1, config["max_batch_size"]}
    for sample in samples:
        image = sample["inputs"]["image"]
        assert image["input_data_file"] == "image"  # Triton reads warmup/image, written by the build
        assert image["data_type"] == "TYPE_FP32"
        assert [int(d) for d in image["dims"]] == [1, full["input_height"], full["input_width"]]


def test_documented_tensorrt_block_parses_when_switched_on(parsed: tuple[dict, dict]) -> None:
    committed, switched_on = parsed
    (accelerator,) = switched_on["optimization"]["execution_accelerators"]["gpu_execution_accelerator"]
    assert accelerator["name"] == "tensorrt"
    assert accelerator["parameters"]["precision_mode"] == "FP16"
    assert accelerator["parameters"]["trt_engine_cache_enable"] == "1"
    assert accelerator["parameters"]["trt_engine_cache_path"]
    full = recipe()
    size = f"1x{full['input_height']}x{full['input_width']}"
    assert accelerator["parameters"]["trt_profile_min_shapes"] == f"image:1x{size}"
    assert (
        accelerator["parameters"]["trt_profile_max_shapes"] == f"image:{committed['max_batch_size']}x{size}"
    )
    assert {k: v for k, v in switched_on.items() if k != "optimization"} == committed
