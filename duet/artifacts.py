"""Model repositories as signed artifacts on this machine: the development key, signing a local build, and the
check that `duet up` runs before any predictor starts (transformers_pre.artifacts does the work)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from transformers_pre.artifacts import manifest, signing
from transformers_pre.artifacts.check_digests import MANIFEST, SIGNATURE, ManifestError, find_problems
from transformers_pre.artifacts.signing import ArtifactError

from .paths import cache_dir


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path


def dev_key() -> KeyPair:
    """The development signing key of this user (in the cache folder, never in the repository)."""
    folder = cache_dir() / "signing"
    return KeyPair(folder / "dev-model-signing.key.pem", folder / "dev-model-signing.pub.pem")


def ensure_dev_key(say: Callable[[str], None]) -> KeyPair:
    pair = dev_key()
    if not (pair.private.exists() and pair.public.exists()):
        signing.generate_key_pair(pair.private, pair.public)
        say(f"created a DEVELOPMENT signing key in {pair.private.parent} (local builds only: sign releases with "
            "your release key, see docs/artifacts.md)")
    return pair


def sign_repository(directory: Path, private_key: Path, say: Callable[[str], None],
                    password: str | None = None) -> dict:
    """Write artifact.json over `directory` and sign it (model.sig); returns the manifest."""
    files = [path for path in directory.rglob("*") if path.is_file()]
    say(f"hashing {len(files)} files ({sum(path.stat().st_size for path in files) / 1e6:.1f} MB) in {directory}")
    written = manifest.write_manifest(directory)
    signing.sign(directory, private_key, password)
    say(f"wrote {MANIFEST} (artifact_version {written['artifact_version']}, {len(written['files'])} files) "
        f"and {SIGNATURE}")
    return written


def _signed_by(directory: Path, public_key: Path) -> bool:
    try:
        if find_problems(directory):
            return False
        signing.verify_signature(directory, public_key)
        return True
    except (ManifestError, ArtifactError):
        return False


def sign_local_build(directory: Path, say: Callable[[str], None]) -> None:
    """After `duet models build`: (re)write the manifest and the signature with the development key unless the
    repository already carries a valid one by that key (so an unchanged build costs one hashing pass)."""
    pair = ensure_dev_key(say)
    if _signed_by(directory, pair.public):
        say(f"{directory}: manifest and signature up to date (development key)")
        return
    say(f"signing {directory} with the DEVELOPMENT key {pair.private} (not for release)")
    sign_repository(directory, pair.private, say)


def verify_for_serving(directory: Path, public_key: Path | None, say: Callable[[str], None]) -> None:
    """The check before a predictor starts: digests against artifact.json, then the signature with
    `public_key` (None: this user's development key). Raises ArtifactError naming the file(s)."""
    if public_key is None:
        public_key = dev_key().public
        if not public_key.exists():
            raise ArtifactError(f"no public key to verify {directory} with: pass --artifact-public-key (or build "
                                "locally with `duet models build`, which signs with a development key)")
    say(f"verifying model artifacts in {directory} (digests, then the signature by {public_key})")
    count = signing.verify_repository(directory, public_key)
    say(f"model artifacts verified: {count} files")
