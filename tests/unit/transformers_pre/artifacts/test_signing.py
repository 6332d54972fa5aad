"""model-signing key-pair signatures over a real repository folder: what verifies and what each check refuses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from transformers_pre.artifacts import manifest, signing
from transformers_pre.artifacts.signing import ArtifactError

from .conftest import Keys


@pytest.fixture
def signed(repository: Path, keys: Keys) -> Path:
    manifest.write_manifest(repository)
    signing.sign(repository, keys.private)
    return repository


def test_a_signed_repository_verifies_with_its_public_key(signed: Path, keys: Keys) -> None:
    assert (signed / "model.sig").is_file()
    assert signing.verify_repository(signed, keys.public) == 6


def test_the_signature_covers_the_manifest(signed: Path, keys: Keys) -> None:
    # Rewriting artifact.json to match a replaced model defeats the digest check, not the signature.
    (signed / "sentiment/1/model.onnx").write_bytes(b"another model")
    manifest.write_manifest(signed)
    with pytest.raises(ArtifactError, match=r"artifact.json: content differs from the signed content") as caught:
        signing.verify_repository(signed, keys.public)
    assert "sentiment/1/model.onnx: content differs" in str(caught.value)


def test_a_tampered_file_is_named_by_the_digest_check_first(signed: Path, keys: Keys) -> None:
    model = signed / "mammo_detector/1/model.onnx"
    content = model.read_bytes()
    model.write_bytes(content[:-1] + bytes([content[-1] ^ 0xFF]))
    with pytest.raises(ArtifactError, match=r"^mammo_detector/1/model.onnx: sha256 differs"):
        signing.verify_repository(signed, keys.public)


def test_another_key_does_not_verify(signed: Path, other_keys: Keys) -> None:
    with pytest.raises(ArtifactError, match="does not verify with"):
        signing.verify_signature(signed, other_keys.public)


def test_a_forged_signature_does_not_verify(signed: Path, keys: Keys) -> None:
    bundle = json.loads((signed / "model.sig").read_text())
    signature = bundle["dsseEnvelope"]["signatures"][0]["sig"]
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = ("B" if signature[0] != "B" else "C") + signature[1:]
    (signed / "model.sig").write_text(json.dumps(bundle))
    with pytest.raises(ArtifactError, match="model.sig"):
        signing.verify_signature(signed, keys.public)


@pytest.mark.parametrize("content", ["", "not json", "{}"])
def test_a_malformed_signature_is_refused_with_its_name(signed: Path, keys: Keys, content: str) -> None:
    (signed / "model.sig").write_text(content)
    with pytest.raises(ArtifactError, match="^model.sig: "):
        signing.verify_signature(signed, keys.public)


def test_a_missing_signature_is_refused(repository: Path, keys: Keys) -> None:
    manifest.write_manifest(repository)
    with pytest.raises(ArtifactError, match="model.sig: missing"):
        signing.verify_repository(repository, keys.public)


def test_a_file_added_after_signing_is_refused(signed: Path, keys: Keys) -> None:
    (signed / "sentiment/2").mkdir()
    (signed / "sentiment/2/model.onnx").write_bytes(b"x")
    with pytest.raises(ArtifactError, match="sentiment/2/model.onnx: not listed in the manifest"):
        signing.verify_repository(signed, keys.public)


def test_without_a_key_only_the_digests_are_checked(signed: Path) -> None:
    (signed / "model.sig").write_text("garbage")
    assert signing.verify_repository(signed, None) == 6


def test_a_file_slipped_in_with_a_rewritten_manifest_is_named_by_the_signature(signed: Path, keys: Keys) -> None:
    (signed / "sentiment/1/model.py").write_text("import os\n")
    manifest.write_manifest(signed)
    with pytest.raises(ArtifactError, match=r"extra files compared with the signed content: sentiment/1/model.py"):
        signing.verify_repository(signed, keys.public)


def test_model_signings_own_cli_verifies_the_signature_and_refuses_a_change(signed: Path, keys: Keys) -> None:
    # Sites that use model-signing's CLI (not duet) check the same model.sig.
    command = [sys.executable, "-m", "model_signing", "verify", "key", str(signed), "--signature",
               str(signed / "model.sig"), "--public_key", str(keys.public)]
    passed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    (signed / "sentiment/config.pbtxt").write_text('name: "other"\n')
    failed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert failed.returncode != 0
    assert "sentiment/config.pbtxt" in failed.stdout + failed.stderr
