"""The served artifact's identity: one version string for responses, metadata and the DICOM SR.

`version` is the first 12 hex digits of sha256(<Triton model name> "/" <sha256 of the ONNX file>): the SR's
Algorithm Version (`dicom/report.py`, `Device.for_model`) is this function over the same bytes, so a
stored SR, a stored response and the metadata name one build. The model card (`card.json`, written by the
build) ties it to its recipe: `recipe` is the build recipe's key (`.recipe`) and `onnx_sha256` the file's
digest the card lists under `artifacts`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

ONNX_FILE = "1/model.onnx"
RECIPE_FILE = ".recipe"
CARD_FILE = "card.json"
VERSION_HEX_DIGITS = 12


def version_of(model_name: str, fingerprint: bytes) -> str:
    """The public version of the build of `model_name` whose bytes hash to `fingerprint`."""
    return hashlib.sha256(model_name.encode() + b"/" + fingerprint).hexdigest()[:VERSION_HEX_DIGITS]


def _file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.digest()


def _card_onnx_digest(folder: Path) -> bytes | None:
    """The ONNX digest the model card lists (for a transformer whose storage has the card, not the ONNX)."""
    path = folder / CARD_FILE
    if not path.exists():
        return None
    try:
        card = json.loads(path.read_text())
        return bytes.fromhex(card["artifacts"][ONNX_FILE])
    except (ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class ArtifactIdentity:
    """Which build of a model is served.

    fingerprint: the bytes the version is computed from (the ONNX file's sha256; without an ONNX file or a
    card that lists it, the labels file's bytes, so a version still changes when the labels do).
    """

    model_name: str
    fingerprint: bytes
    onnx_sha256: str | None
    recipe: str | None

    @property
    def version(self) -> str:
        return version_of(self.model_name, self.fingerprint)

    @classmethod
    def read(cls, folder: Path, model_name: str) -> ArtifactIdentity:
        """The identity of the model built into `folder` (`<repository>/<model_name>`)."""
        onnx = folder / ONNX_FILE
        digest = _file_sha256(onnx) if onnx.exists() else _card_onnx_digest(folder)
        if digest is None:
            labels = folder / "labels.txt"
            fingerprint = labels.read_bytes() if labels.exists() else b""
        else:
            fingerprint = digest
        recipe_path = folder / RECIPE_FILE
        recipe = recipe_path.read_text().strip() or None if recipe_path.exists() else None
        return cls(model_name=model_name, fingerprint=fingerprint,
                   onnx_sha256=digest.hex() if digest is not None else None, recipe=recipe)

    def parameters(self) -> dict[str, str]:
        """The metadata parameters that tie the version to the card (absent values left out)."""
        found = {"version": self.version, "onnx_sha256": self.onnx_sha256, "recipe": self.recipe}
        return {key: value for key, value in found.items() if value is not None}
