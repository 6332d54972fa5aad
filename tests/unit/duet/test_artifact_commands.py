"""`duet models sign | verify | keygen | encrypt | decrypt` run as processes on a real repository folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from duet.paths import ROOT
from transformers_pre.artifacts import signing
from transformers_pre.artifacts.check_digests import find_problems


def duet(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DUET_CACHE_DIR": str(cache), "COLUMNS": "200"}
    env.pop("DUET_ARTIFACT_PUBLIC_KEY", None)
    env.pop("DUET_MODEL_REPOSITORY", None)
    return subprocess.run([sys.executable, "-c", "from duet.cli import app; app()", *args], env=env,
                          capture_output=True, text=True, check=False, timeout=120)


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    root = tmp_path / "model_repository"
    (root / "sentiment/1").mkdir(parents=True)
    (root / "sentiment/config.pbtxt").write_text('name: "sentiment"\n')
    (root / "sentiment/1/model.onnx").write_bytes(os.urandom(50_000))
    return root


def test_sign_with_the_development_key_then_verify(repository: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    signed = duet("models", "sign", "--repository", str(repository), cache=cache)
    assert signed.returncode == 0, signed.stderr
    assert "DEVELOPMENT" in signed.stderr
    assert (cache / "signing/dev-model-signing.key.pem").stat().st_mode & 0o077 == 0
    assert json.loads((repository / "artifact.json").read_text())["files"].keys() == {
        "sentiment/config.pbtxt", "sentiment/1/model.onnx"}
    verified = duet("models", "verify", "--repository", str(repository), cache=cache)
    assert verified.returncode == 0, verified.stderr
    assert "model artifacts verified: 2 files" in verified.stderr


def test_verify_names_a_truncated_model_and_exits_1(repository: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert duet("models", "sign", "--repository", str(repository), cache=cache).returncode == 0
    model = repository / "sentiment/1/model.onnx"
    model.write_bytes(model.read_bytes()[:100])
    verified = duet("models", "verify", "--repository", str(repository), cache=cache)
    assert verified.returncode == 1
    assert "artifact check failed: sentiment/1/model.onnx: size 100 bytes" in verified.stderr.replace("\n", "")


@pytest.mark.slow  # the CLI in a child interpreter, twice or more
def test_a_release_key_pair_signs_and_the_development_key_does_not_verify_it(repository: Path,
                                                                             tmp_path: Path) -> None:
    # A release is verified with its public key; this user's development key must not vouch for it.
    cache = tmp_path / "cache"
    private, public = tmp_path / "release.key.pem", tmp_path / "release.pub.pem"
    assert duet("models", "keygen", "--private-key", str(private), "--public-key", str(public),
                cache=cache).returncode == 0
    assert duet("models", "keygen", "--private-key", str(private), "--public-key", str(public),
                cache=cache).returncode == 1  # never overwrites a key
    assert duet("models", "sign", "--repository", str(repository), "--private-key", str(private),
                cache=cache).returncode == 0
    assert duet("models", "verify", "--repository", str(repository), "--public-key", str(public),
                cache=cache).returncode == 0
    signing.generate_key_pair(cache / "signing/dev-model-signing.key.pem", cache / "signing/dev-model-signing.pub.pem")
    against_dev = duet("models", "verify", "--repository", str(repository), cache=cache)
    assert against_dev.returncode == 1
    assert "does not verify" in against_dev.stderr.replace("\n", "")


@pytest.mark.slow  # the CLI in a child interpreter, twice or more
def test_encrypt_then_decrypt_restores_a_repository_that_verifies(repository: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    key_file = tmp_path / "artifact.key"
    key_file.write_text("a long passphrase\n")
    assert duet("models", "sign", "--repository", str(repository), cache=cache).returncode == 0
    target = tmp_path / "repository.tar.enc"
    encrypted = duet("models", "encrypt", "--repository", str(repository), "--key-file", str(key_file),
                     "--out", str(target), cache=cache)
    assert encrypted.returncode == 0, encrypted.stderr
    restored = tmp_path / "restored"
    decrypted = duet("models", "decrypt", str(target), "--key-file", str(key_file), "--out", str(restored),
                     cache=cache)
    assert decrypted.returncode == 0, decrypted.stderr
    assert find_problems(restored) == []
    assert duet("models", "verify", "--repository", str(restored), cache=cache).returncode == 0


def test_encrypt_refuses_a_repository_that_does_not_match_its_manifest(repository: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    key_file = tmp_path / "artifact.key"
    key_file.write_text("a long passphrase\n")
    unsigned = duet("models", "encrypt", "--repository", str(repository), "--key-file", str(key_file),
                    "--out", str(tmp_path / "x.enc"), cache=cache)
    assert unsigned.returncode == 1 and "artifact.json not found" in unsigned.stderr.replace("\n", "")
    assert duet("models", "sign", "--repository", str(repository), cache=cache).returncode == 0
    (repository / "sentiment/extra.txt").write_text("x")
    extra = duet("models", "encrypt", "--repository", str(repository), "--key-file", str(key_file),
                 "--out", str(tmp_path / "x.enc"), cache=cache)
    assert extra.returncode == 1 and "sentiment/extra.txt: not listed" in extra.stderr.replace("\n", "")
    assert not (tmp_path / "x.enc").exists()


def test_the_local_build_is_signed_once_and_re_signed_after_a_change(repository: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from duet.artifacts import sign_local_build

    monkeypatch.setenv("DUET_CACHE_DIR", str(tmp_path / "cache"))
    said: list[str] = []
    sign_local_build(repository, said.append)
    assert any("DEVELOPMENT key" in line for line in said)
    first = (repository / "model.sig").read_bytes()
    said.clear()
    sign_local_build(repository, said.append)
    assert any("up to date" in line for line in said)
    assert (repository / "model.sig").read_bytes() == first
    (repository / "sentiment/config.pbtxt").write_text('name: "sentiment"\nmax_batch_size: 8\n')
    sign_local_build(repository, said.append)
    assert (repository / "model.sig").read_bytes() != first
    assert find_problems(repository) == []
