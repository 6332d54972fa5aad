"""Triton `config.pbtxt` files, parsed with Triton's own `ModelConfig` protobuf.

`model_config_pb2` ships inside `tritonclient.grpc`, whose package import registers Triton's gRPC service
protos, which clash with KServe's in one process (docs/architecture.md). Only the ModelConfig module is loaded here, by
file, so this works beside kserve; `dump_json` parses in a fresh interpreter for callers that want isolation.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

from google.protobuf import json_format, text_format


@cache
def _model_config_pb2():
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("tritonclient is not installed")
    source = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    module_spec = importlib.util.spec_from_file_location("duet_triton_model_config_pb2", source)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def load(path: Path):
    """Parse a config.pbtxt into Triton's ModelConfig message; raises ParseError on an unknown field."""
    return text_format.Parse(Path(path).read_text(), _model_config_pb2().ModelConfig())


def datatype_name(value: int) -> str:
    """Triton's name for a `data_type` enum value ("TYPE_FP32")."""
    return _model_config_pb2().DataType.Name(value)


def datatype_value(name: str) -> int:
    """The `data_type` enum value of Triton's name for it."""
    return _model_config_pb2().DataType.Value(name)


def dump(config: Any) -> str:
    """Serialise a ModelConfig back to pbtxt."""
    return text_format.MessageToString(config)


def dump_json(path: Path) -> dict[str, Any]:
    """Parse a config.pbtxt in a separate interpreter and return it as a dict (protobuf JSON field names)."""
    completed = subprocess.run(
        [sys.executable, "-m", "models.model_config", str(path)],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent, check=False,
    )
    if completed.returncode != 0:
        raise ValueError(f"{path}: {completed.stderr.strip().splitlines()[-1] if completed.stderr else 'failed'}")
    return json.loads(completed.stdout)


if __name__ == "__main__":
    print(json.dumps(json_format.MessageToDict(load(Path(sys.argv[1])), preserving_proto_field_name=True)))
