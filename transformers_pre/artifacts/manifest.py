"""Write `artifact.json`, the per-file sha256 manifest of a model repository, and derive its version."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from .check_digests import MANIFEST, SCHEMA, UNLISTED, repository_files, sha256_of


def artifact_version(files: dict[str, dict]) -> str:
    """A version that names the content: the sha256 of the sorted (path, digest) list, shortened. Two builds with
    the same files get the same version; any changed byte gives a new one."""
    listing = "".join(f"{relpath}\0{entry['sha256']}\n" for relpath, entry in sorted(files.items()))
    return "sha256-" + hashlib.sha256(listing.encode()).hexdigest()[:16]


def build_manifest(directory: Path, progress: Callable[[str], None] | None = None) -> dict:
    """The manifest of every file under `directory` (artifact.json and model.sig aside). Symlinks are refused:
    the checker could not tell where they point on the serving side."""
    files: dict[str, dict] = {}
    for relpath in repository_files(directory):
        if relpath in UNLISTED:
            continue
        path = directory / relpath
        if path.is_symlink() or not path.is_file():
            raise ValueError(f"{relpath}: not a regular file (symlinks are not allowed in a model repository)")
        if progress:
            progress(relpath)
        files[relpath] = {"sha256": sha256_of(path), "size": path.stat().st_size}
    if not files:
        raise ValueError(f"{directory}: no files to list")
    return {"schema": SCHEMA, "artifact_version": artifact_version(files), "files": files}


def write_manifest(directory: Path, progress: Callable[[str], None] | None = None) -> dict:
    """Write `directory/artifact.json` (replacing an old one) and return it."""
    manifest = build_manifest(directory, progress)
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest
