"""Sign and verify a model repository with OpenSSF model-signing (an elliptic-curve key pair).

The signature (`model.sig`, a Sigstore bundle) covers every file of the repository, artifact.json included, so a
verified signature vouches for the manifest that the stdlib checker (check_digests.py) then applies. Key pairs suit
air-gapped sites; connected sites can sign keyless with Sigstore instead (`model_signing sign sigstore`), and
verify with the signer's identity: docs/artifacts.md.
"""

from __future__ import annotations

import re
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .check_digests import SIGNATURE, ManifestError, find_problems, load_manifest


class ArtifactError(RuntimeError):
    """The repository is not the signed artifact: the message names the file(s) and why."""


def sign(directory: Path, private_key: Path, password: str | None = None) -> Path:
    """Write `directory/model.sig` over every file of `directory` (model.sig itself aside)."""
    # Imported on use, here and below: model-signing pulls in sigstore, which `duet --help` need not load.
    from model_signing import hashing, signing

    signature = directory / SIGNATURE
    signature.unlink(missing_ok=True)
    hashing_config = hashing.Config().set_ignored_paths(paths=[SIGNATURE], ignore_git_paths=False)
    (signing.Config().use_elliptic_key_signer(private_key=private_key, password=password)
     .set_hashing_config(hashing_config).sign(directory, signature))
    return signature


def _readable(mismatch: str) -> str:
    # model-signing reports a repr of its list of differences, digests as bytes: keep the file names only
    # (quotes inside may come escaped, hence the optional backslashes).
    described = [f"{name}: content differs from the signed content"
                 for name in re.findall(r"Hash mismatch for \\*'([^'\\]+)", mismatch)]
    described += [f"{kind.lower()} files compared with the signed content: {names}" for kind, names in
                  re.findall(r"(Extra|Missing) files (?:found )?in model \\*'[^']*\\*': ([^\"'\]\\]+)", mismatch)]
    return "; ".join(sorted(described)) or mismatch


def verify_signature(directory: Path, public_key: Path) -> None:
    """Raise ArtifactError unless model.sig is a valid signature by `public_key` over exactly these files."""
    from model_signing import verifying

    signature = directory / SIGNATURE
    if not signature.is_file():
        raise ArtifactError(f"{SIGNATURE}: missing in {directory} (the repository is not signed)")
    if not Path(public_key).is_file():
        raise ArtifactError(f"public key {public_key} not found")
    try:
        verifying.Config().use_elliptic_key_verifier(public_key=public_key).verify(directory, signature)
    except InvalidSignature:
        raise ArtifactError(f"{SIGNATURE}: the signature does not verify with {public_key} (forged or altered)") \
            from None
    except (ValueError, LookupError, TypeError) as error:  # a malformed bundle: JSON, key or field errors
        message = str(error)
        if message.startswith("Signature mismatch"):
            raise ArtifactError(f"signature check failed: {_readable(message)}") from None
        raise ArtifactError(f"{SIGNATURE}: does not verify with {public_key}: {type(error).__name__}: {message}") \
            from None


def verify_repository(directory: Path, public_key: Path | None) -> int:
    """Check the digests against artifact.json (naming each bad file), then the signature when a key is given.
    Returns how many files were checked; raises ArtifactError on the first failing stage."""
    try:
        manifest = load_manifest(directory)
        problems = find_problems(directory, manifest)
    except ManifestError as error:
        raise ArtifactError(str(error)) from None
    if problems:
        raise ArtifactError("; ".join(f"{relpath}: {reason}" for relpath, reason in problems))
    if public_key is not None:
        verify_signature(directory, public_key)
    return len(manifest["files"])


def generate_key_pair(private_key: Path, public_key: Path) -> None:
    """A new P-256 key pair as PEM files (the private key readable by its owner only)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private_key.parent.mkdir(parents=True, exist_ok=True)
    private_key.touch(mode=0o600)
    private_key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    public_key.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))
