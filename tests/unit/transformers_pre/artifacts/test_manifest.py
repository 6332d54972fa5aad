"""artifact.json: what it lists and how its version follows the content."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from transformers_pre.artifacts import manifest


def test_it_lists_every_file_with_its_sha256_and_size(repository: Path) -> None:
    written = manifest.write_manifest(repository)
    on_disk = json.loads((repository / "artifact.json").read_text())
    assert on_disk == written
    assert on_disk["schema"] == "duet.artifact/v1"
    model = repository / "sentiment/1/model.onnx"
    assert on_disk["files"]["sentiment/1/model.onnx"] == {
        "sha256": hashlib.sha256(model.read_bytes()).hexdigest(), "size": model.stat().st_size}
    assert sorted(on_disk["files"]) == sorted(
        path.relative_to(repository).as_posix() for path in repository.rglob("*")
        if path.is_file() and path.name != "artifact.json")


def test_the_version_is_stable_for_the_same_files_and_changes_with_one_byte(repository: Path) -> None:
    first = manifest.write_manifest(repository)["artifact_version"]
    assert manifest.write_manifest(repository)["artifact_version"] == first
    (repository / "sentiment/tokenizer.json").write_bytes(b'{"version": "1.1"}')
    assert manifest.write_manifest(repository)["artifact_version"] != first
    assert first.startswith("sha256-")


def test_an_old_manifest_and_signature_are_not_listed(repository: Path) -> None:
    manifest.write_manifest(repository)
    (repository / "model.sig").write_text("{}")
    assert not {"artifact.json", "model.sig"} & set(manifest.write_manifest(repository)["files"])


def test_a_symlink_in_the_repository_is_refused(repository: Path) -> None:
    (repository / "sentiment/link.onnx").symlink_to(repository / "sentiment/1/model.onnx")
    with pytest.raises(ValueError, match="sentiment/link.onnx: not a regular file"):
        manifest.write_manifest(repository)
