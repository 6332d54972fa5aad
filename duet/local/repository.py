"""The local variant of the Triton model repository: each ONNX model wrapped by the Python-backend model.

The committed `config.pbtxt` files are for Triton's container (`platform: onnxruntime_onnx`, KIND_GPU). Locally
the same tensor names, `max_batch_size`, `dynamic_batching` and warmup are kept, and the ONNX file is run by
`models/triton_python_backend/model.py` with ONNX Runtime on the CPU.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from models import model_config

BACKEND_MODEL = Path(__file__).resolve().parents[2] / "models" / "triton_python_backend" / "model.py"


@dataclass(frozen=True)
class ServedModel:
    """One model of the repository as the local predictor serves it."""

    name: str
    onnx: Path
    max_batch_size: int
    max_queue_delay_us: int


def onnx_file(model_dir: Path, config, int8: bool) -> Path:
    version_dir = model_dir / "1"
    default = version_dir / (config.default_model_filename or "model.onnx")
    quantized = version_dir / "model.int8.onnx"
    return quantized if int8 and quantized.exists() else default


def built_models(repository: Path, names: list[str], int8: bool = False) -> list[ServedModel]:
    """The named models that have a config and a built ONNX file, with what the local predictor needs."""
    served = []
    for name in names:
        config_path = repository / name / "config.pbtxt"
        if not config_path.exists():
            continue
        config = model_config.load(config_path)
        onnx = onnx_file(repository / name, config, int8)
        if onnx.exists():
            delay = config.dynamic_batching.max_queue_delay_microseconds if config.HasField("dynamic_batching") else 0
            served.append(ServedModel(name, onnx, config.max_batch_size, delay))
    return served


def onnx_threads(requested: int) -> int:
    """ONNX Runtime intra-op threads for the local predictor: `requested`, or with 0 one per core but one.

    Locally the transformer, tritonserver and the clients share the predictor's cores. Measured on 2 cores
    (docs/benchmarks.md), single headlines at 32 clients: one thread 286 requests/s and 3.2 ms of stub CPU per
    request, two threads 250/s and 4.5 ms (small batches gain little from a second thread and pay for the
    hand-offs). Requests of 8 texts are the exception (52 against 40 requests/s with two threads at 32 clients):
    `duet up --onnx-threads` sets it.
    """
    return requested if requested > 0 else max(1, (os.cpu_count() or 1) - 1)


def triton_side_files(config) -> list[str]:
    """Files beside the model that Triton itself reads (so the local copy needs them): each output's
    `label_filename` and the `warmup/` folder that `model_warmup` inputs name."""
    names = [output.label_filename for output in config.output if output.label_filename]
    return list(dict.fromkeys(names + (["warmup"] if len(config.model_warmup) else [])))


def write_local_repository(repository: Path, target: Path, models: list[ServedModel], threads: int) -> Path:
    """Write the Python-backend repository for `models` under `target` (replaced) and return it.

    threads: ONNX Runtime intra-op threads per model (0: `onnx_threads`' default)."""
    if target.exists():
        shutil.rmtree(target)
    for model in models:
        source = repository / model.name
        config = model_config.load(source / "config.pbtxt")
        config.platform = ""
        config.backend = "python"
        config.default_model_filename = ""
        config.ClearField("optimization")
        del config.instance_group[:]
        group = config.instance_group.add()
        group.kind = group.KIND_CPU
        group.count = 1
        config.parameters["onnx_model"].string_value = str(model.onnx.resolve())
        config.parameters["intra_op_threads"].string_value = str(onnx_threads(threads))
        destination = target / model.name
        (destination / "1").mkdir(parents=True)
        (destination / "config.pbtxt").write_text(model_config.dump(config))
        shutil.copy(BACKEND_MODEL, destination / "1" / "model.py")
        for side in triton_side_files(config):
            if (source / side).is_dir():
                shutil.copytree(source / side, destination / side)
            elif (source / side).exists():
                shutil.copy(source / side, destination / side)
    return target
