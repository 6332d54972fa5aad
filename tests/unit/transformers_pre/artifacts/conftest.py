"""A small model repository on disk, shaped like the built one, and a signing key pair."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from transformers_pre.artifacts import signing


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    root = tmp_path / "model_repository"
    files = {
        "sentiment/config.pbtxt": b'name: "sentiment"\nplatform: "onnxruntime_onnx"\n',
        "sentiment/1/model.onnx": os.urandom(300_000),
        "sentiment/tokenizer.json": b'{"version": "1.0"}',
        "mammo_detector/config.pbtxt": b'name: "mammo_detector"\n',
        "mammo_detector/1/model.onnx": os.urandom(100_000),
        "mammo_detector/warmup/image": os.urandom(1024),
    }
    for relpath, content in files.items():
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        (root / relpath).write_bytes(content)
    return root


@dataclass(frozen=True)
class Keys:
    private: Path
    public: Path


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    folder = tmp_path_factory.mktemp("keys")
    pair = Keys(folder / "signing.key.pem", folder / "signing.pub.pem")
    signing.generate_key_pair(pair.private, pair.public)
    return pair


@pytest.fixture(scope="session")
def other_keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    folder = tmp_path_factory.mktemp("other-keys")
    pair = Keys(folder / "other.key.pem", folder / "other.pub.pem")
    signing.generate_key_pair(pair.private, pair.public)
    return pair
