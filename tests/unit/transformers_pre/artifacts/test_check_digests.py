"""check_digests.py run as the Triton image runs it: a separate python3 process on a real repository folder."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from transformers_pre.artifacts import check_digests, manifest

CHECKER = Path(check_digests.__file__)


def run_checker(directory: Path) -> subprocess.CompletedProcess[str]:
    # -I: isolated, as in the Triton container (no site-packages, no PYTHONPATH, no user site).
    return subprocess.run([sys.executable, "-I", str(CHECKER), str(directory)], check=False, capture_output=True,
                          text=True, timeout=60)


def test_it_imports_nothing_outside_the_standard_library() -> None:
    tree = ast.parse(CHECKER.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported - {"__future__"} <= set(sys.stdlib_module_names)


def test_an_intact_repository_passes(repository: Path) -> None:
    written = manifest.write_manifest(repository)
    result = run_checker(repository)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"artifact check passed: {len(written['files'])} files"
    assert len(written["files"]) == 6


def test_a_tampered_file_fails_and_is_named(repository: Path) -> None:
    manifest.write_manifest(repository)
    model = repository / "sentiment/1/model.onnx"
    content = bytearray(model.read_bytes())
    content[1000] ^= 0x01  # one bit: same size, other digest
    model.write_bytes(bytes(content))
    result = run_checker(repository)
    assert result.returncode == 1
    assert result.stderr.strip() == ("artifact check failed: sentiment/1/model.onnx: sha256 differs from the "
                                     "manifest (modified)")
    assert result.stdout == ""


def test_a_truncated_file_fails_with_both_sizes(repository: Path) -> None:
    written = manifest.write_manifest(repository)
    model = repository / "mammo_detector/1/model.onnx"
    model.write_bytes(model.read_bytes()[:4096])
    result = run_checker(repository)
    assert result.returncode == 1
    expected = written["files"]["mammo_detector/1/model.onnx"]["size"]
    assert (f"artifact check failed: mammo_detector/1/model.onnx: size 4096 bytes, manifest says {expected}"
            in result.stderr)


def test_an_extra_file_and_a_missing_file_each_fail(repository: Path) -> None:
    manifest.write_manifest(repository)
    (repository / "sentiment/1/model.onnx.bak").write_bytes(b"x")
    (repository / "sentiment/tokenizer.json").unlink()
    result = run_checker(repository)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "artifact check failed: sentiment/1/model.onnx.bak: not listed in the manifest",
        "artifact check failed: sentiment/tokenizer.json: missing",
    ]


def test_a_symlink_is_refused_even_to_an_identical_file(repository: Path, tmp_path: Path) -> None:
    manifest.write_manifest(repository)
    tokenizer = repository / "sentiment/tokenizer.json"
    outside = tmp_path / "elsewhere.json"
    outside.write_bytes(tokenizer.read_bytes())
    tokenizer.unlink()
    tokenizer.symlink_to(outside)
    result = run_checker(repository)
    assert result.returncode == 1
    assert "sentiment/tokenizer.json: not a regular file" in result.stderr


@pytest.mark.parametrize(("content", "reason"), [
    (None, "artifact.json not found"),
    ("{not json", "not readable JSON"),
    (json.dumps({"schema": "other/v1", "artifact_version": "x", "files": {}}), "schema is not"),
    (json.dumps({"schema": "duet.artifact/v1", "artifact_version": "x",
                 "files": {"../etc/passwd": {"sha256": "0" * 64, "size": 1}}}), "not a relative path"),
    (json.dumps({"schema": "duet.artifact/v1", "artifact_version": "x",
                 "files": {"a": {"sha256": "XYZ", "size": 1}}}), "needs a lowercase hex sha256"),
])
def test_a_missing_or_invalid_manifest_exits_2(repository: Path, content: str | None, reason: str) -> None:
    if content is not None:
        (repository / "artifact.json").write_text(content)
    result = run_checker(repository)
    assert result.returncode == 2
    assert result.stderr.startswith("artifact check failed: ")
    assert reason in result.stderr


def test_the_signature_file_beside_the_manifest_is_not_an_extra_file(repository: Path) -> None:
    manifest.write_manifest(repository)
    (repository / "model.sig").write_text("{}")
    assert run_checker(repository).returncode == 0


def test_find_problems_returns_the_same_findings_in_process(repository: Path) -> None:
    manifest.write_manifest(repository)
    (repository / "sentiment/config.pbtxt").write_text('name: "evil"\n')
    problems = check_digests.find_problems(repository)
    assert [relpath for relpath, _ in problems] == ["sentiment/config.pbtxt"]
