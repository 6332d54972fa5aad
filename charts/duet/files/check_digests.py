"""Check a model repository against its manifest (`artifact.json`) before a model server loads it.

Standard library only: it also runs inside the Triton image, which has python3 and nothing else.

    python3 check_digests.py DIR

reads DIR/artifact.json ({"schema": "duet.artifact/v1", "artifact_version": ..., "files": {relpath: {"sha256",
"size"}}}) and checks that every listed file exists with that size and digest and that DIR holds no file the
manifest does not list (artifact.json and model.sig aside). Exit 0 with `artifact check passed: N files`; exit 1
with one `artifact check failed: <relpath>: <reason>` line per problem on stderr; exit 2 when artifact.json is
missing or invalid.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path, PurePosixPath

SCHEMA = "duet.artifact/v1"
MANIFEST = "artifact.json"
SIGNATURE = "model.sig"
UNLISTED = frozenset({MANIFEST, SIGNATURE})
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


class ManifestError(ValueError):
    """artifact.json is missing or not a valid duet.artifact/v1 manifest."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def repository_files(directory: Path) -> list[str]:
    """Every entry under `directory` that is not a folder, as sorted POSIX paths relative to it (symlinks
    included, not followed: a link could point anywhere, so the checks refuse it)."""
    found = []
    for root, folders, files in os.walk(directory):
        base = Path(root)
        for name in files + [folder for folder in folders if (base / folder).is_symlink()]:
            found.append((base / name).relative_to(directory).as_posix())
    return sorted(found)


def _valid_relpath(relpath: str) -> bool:
    path = PurePosixPath(relpath)
    return bool(relpath) and not path.is_absolute() and ".." not in path.parts and "\\" not in relpath


def load_manifest(directory: Path) -> dict:
    """The parsed manifest of `directory`; raises ManifestError naming what is wrong with it."""
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{MANIFEST} not found in {directory}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"{MANIFEST} is not readable JSON: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise ManifestError(f"{MANIFEST}: schema is not {SCHEMA!r}")
    if not isinstance(manifest.get("artifact_version"), str) or not manifest["artifact_version"]:
        raise ManifestError(f"{MANIFEST}: artifact_version is missing")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ManifestError(f"{MANIFEST}: files is missing or empty")
    for relpath, entry in files.items():
        if not _valid_relpath(relpath) or relpath in UNLISTED:
            raise ManifestError(f"{MANIFEST}: {relpath!r} is not a relative path inside the repository")
        if (not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str)
                or not _HEX_SHA256.fullmatch(entry["sha256"]) or not isinstance(entry.get("size"), int)
                or isinstance(entry["size"], bool) or entry["size"] < 0):
            raise ManifestError(f"{MANIFEST}: {relpath}: needs a lowercase hex sha256 and a size in bytes")
    return manifest


def find_problems(directory: Path, manifest: dict | None = None) -> list[tuple[str, str]]:
    """(relpath, reason) for every file that does not match the manifest, in path order; empty when all do.

    Raises ManifestError when the manifest itself is missing or invalid."""
    directory = Path(directory)
    manifest = load_manifest(directory) if manifest is None else manifest
    listed: dict[str, dict] = manifest["files"]
    present = set(repository_files(directory)) - UNLISTED
    problems = []
    for relpath in sorted(present | set(listed)):
        entry = listed.get(relpath)
        path = directory / relpath
        if entry is None:
            problems.append((relpath, "not listed in the manifest"))
        elif relpath not in present:
            problems.append((relpath, "missing"))
        elif path.is_symlink() or not path.is_file():
            problems.append((relpath, "not a regular file"))
        elif (size := path.stat().st_size) != entry["size"]:
            problems.append((relpath, f"size {size} bytes, manifest says {entry['size']} (truncated or replaced)"))
        elif sha256_of(path) != entry["sha256"]:
            problems.append((relpath, "sha256 differs from the manifest (modified)"))
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: check_digests.py DIR", file=sys.stderr)
        return 2
    directory = Path(argv[0])
    try:
        manifest = load_manifest(directory)
        problems = find_problems(directory, manifest)
    except ManifestError as error:
        print(f"artifact check failed: {error}", file=sys.stderr)
        return 2
    for relpath, reason in problems:
        print(f"artifact check failed: {relpath}: {reason}", file=sys.stderr)
    if problems:
        return 1
    print(f"artifact check passed: {len(manifest['files'])} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
