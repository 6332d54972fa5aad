"""The served build's version: one string for responses, metadata and the SR, read from the model folder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from duet.paths import MODEL_REPOSITORY
from transformers_pre.dicom.report import Device
from transformers_pre.versions import ArtifactIdentity, version_of


def _folder(tmp_path: Path, onnx: bytes | None = b"onnx bytes", card_digest: str | None = None,
            recipe: str | None = "m-0123") -> Path:
    folder = tmp_path / "m"
    (folder / "1").mkdir(parents=True)
    (folder / "labels.txt").write_text("a\nb\n")
    if onnx is not None:
        (folder / "1" / "model.onnx").write_bytes(onnx)
    if card_digest is not None:
        (folder / "card.json").write_text(json.dumps({"artifacts": {"1/model.onnx": card_digest}}))
    if recipe is not None:
        (folder / ".recipe").write_text(recipe + "\n")
    return folder


def test_the_version_is_the_srs_algorithm_version_for_the_same_build() -> None:
    fingerprint = hashlib.sha256(b"some model").digest()
    device = Device.for_model("mammo_detector", fingerprint)
    assert version_of("mammo_detector", fingerprint) == device.version


def test_identity_of_a_folder_with_its_onnx(tmp_path: Path) -> None:
    identity = ArtifactIdentity.read(_folder(tmp_path), "m")
    digest = hashlib.sha256(b"onnx bytes")
    assert identity.onnx_sha256 == digest.hexdigest()
    assert identity.version == version_of("m", digest.digest())
    assert len(identity.version) == 12
    assert identity.parameters() == {"version": identity.version, "onnx_sha256": digest.hexdigest(),
                                     "recipe": "m-0123"}


def test_another_onnx_is_another_version(tmp_path: Path) -> None:
    first = ArtifactIdentity.read(_folder(tmp_path / "a"), "m")
    second = ArtifactIdentity.read(_folder(tmp_path / "b", onnx=b"retrained"), "m")
    assert first.version != second.version


def test_without_the_onnx_the_cards_digest_gives_the_same_version(tmp_path: Path) -> None:
    with_file = ArtifactIdentity.read(_folder(tmp_path / "a"), "m")
    card_only = ArtifactIdentity.read(
        _folder(tmp_path / "b", onnx=None, card_digest=hashlib.sha256(b"onnx bytes").hexdigest()), "m")
    assert card_only.version == with_file.version


def test_without_onnx_or_card_the_labels_decide_and_nothing_is_invented(tmp_path: Path) -> None:
    identity = ArtifactIdentity.read(_folder(tmp_path, onnx=None, recipe=None), "m")
    assert identity.onnx_sha256 is None and identity.recipe is None
    assert identity.version == version_of("m", b"a\nb\n")
    assert set(identity.parameters()) == {"version"}


@pytest.mark.parametrize("model", ["mammo_detector", "sentiment"])
def test_the_built_models_version_is_tied_to_their_card(model: str) -> None:
    folder = MODEL_REPOSITORY / model
    if not (folder / "card.json").exists():
        pytest.skip(f"{model} not built (make models)")
    identity = ArtifactIdentity.read(folder, model)
    card = json.loads((folder / "card.json").read_text())
    assert identity.onnx_sha256 == card["artifacts"]["1/model.onnx"]
    assert identity.recipe == (folder / ".recipe").read_text().strip()
