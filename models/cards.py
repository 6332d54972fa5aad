"""Model cards and artifact hashing shared by every model build."""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def package_versions(names: list[str]) -> dict[str, str]:
    """Installed versions of the named distributions ("absent" when not installed)."""
    versions: dict[str, str] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    versions["python"] = platform.python_version()
    return versions


def artifact_hashes(model_dir: Path) -> dict[str, str]:
    """sha256 of every file under a model folder except the card itself, keyed by relative path."""
    return {
        str(path.relative_to(model_dir)): sha256_file(path)
        for path in sorted(model_dir.rglob("*"))
        if path.is_file() and path.name not in {"card.json", "README.md", "config.pbtxt"}
    }


def write_card(model_dir: Path, card: dict[str, Any], readme_markdown: str) -> None:
    """Write `card.json` (machine-readable, with artifact hashes) and `README.md` beside a built model."""
    card = {**card, "artifacts": artifact_hashes(model_dir)}
    (model_dir / "card.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    hashes = "\n".join(f"| `{name}` | `{digest}` |" for name, digest in card["artifacts"].items())
    (model_dir / "README.md").write_text(
        readme_markdown.rstrip() + "\n\n## Artifacts\n\n| file | sha256 |\n|---|---|\n" + hashes + "\n"
    )
