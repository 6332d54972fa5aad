"""Check a model repository against its artifact manifest before anything serves it.

    python3 check_digests.py DIR

DIR/artifact.json lists every file of the repository with its size and sha256:
{"schema": "duet.artifact/v1", "artifact_version": "...", "files": {"<posix relpath>": {"sha256": "<hex>",
"size": N}}}. Every listed file must exist with that size and digest, and no other file may be present (besides
artifact.json and model.sig). Exit 0 and "artifact check passed: N files" on stdout; exit 1 and
"artifact check failed: <relpath>: <reason>" on stderr; exit 2 when artifact.json is missing or invalid.

Standard library only: it runs inside the Triton image (the chart ships a byte-identical copy as a ConfigMap).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path, PurePosixPath

SCHEMA = "duet.artifact/v1"
MANIFEST = "artifact.json"
UNLISTED_ALLOWED = {MANIFEST, "model.sig"}
CHUNK_BYTES = 1 << 20


class ManifestError(ValueError):
    """artifact.json is missing or does not follow the schema."""


def load_manifest(root: Path) -> dict[str, dict]:
    """The manifest's files mapping, validated."""
    path = root / MANIFEST
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ManifestError(f"{MANIFEST} not found in {root}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{MANIFEST} is not readable JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise ManifestError(f"{MANIFEST}: schema is not {SCHEMA}")
    files = document.get("files")
    if not isinstance(files, dict) or not files:
        raise ManifestError(f"{MANIFEST}: files must be a non-empty object")
    for relpath, entry in files.items():
        parts = PurePosixPath(relpath).parts
        if not relpath or relpath.startswith("/") or ".." in parts or "\\" in relpath:
            raise ManifestError(f"{MANIFEST}: {relpath!r} is not a relative POSIX path inside the repository")
        if (not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str)
                or len(entry["sha256"]) != 64 or not isinstance(entry.get("size"), int)
                or isinstance(entry.get("size"), bool) or entry["size"] < 0):
            raise ManifestError(f"{MANIFEST}: {relpath}: needs a 64-hex sha256 and a non-negative integer size")
    return files


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def first_problem(root: Path, files: dict[str, dict]) -> tuple[str, str] | None:
    """(relpath, reason) of the first file that does not match, or None."""
    for relpath in sorted(files):
        entry = files[relpath]
        path = root / relpath
        if not path.is_file():
            return relpath, "missing"
        size = path.stat().st_size
        if size != entry["size"]:
            return relpath, f"size {size} bytes, manifest says {entry['size']} (truncated or replaced)"
        if sha256_of(path) != entry["sha256"].lower():
            return relpath, "sha256 differs from the manifest (altered)"
    for path in sorted(root.rglob("*")):
        if path.is_dir():
            continue
        relpath = path.relative_to(root).as_posix()
        if relpath not in files and relpath not in UNLISTED_ALLOWED:
            return relpath, "not listed in the manifest"
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: check_digests.py DIR", file=sys.stderr)
        return 2
    root = Path(argv[1])
    try:
        files = load_manifest(root)
    except ManifestError as exc:
        print(f"artifact check failed: {exc}", file=sys.stderr)
        return 2
    problem = first_problem(root, files)
    if problem:
        print(f"artifact check failed: {problem[0]}: {problem[1]}", file=sys.stderr)
        return 1
    print(f"artifact check passed: {len(files)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
