"""`duet models sign | verify | keygen | encrypt | decrypt`: publish and check the model repository as an
artifact (docs/artifacts.md)."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

from transformers_pre.artifacts import encryption, signing
from transformers_pre.artifacts.check_digests import ManifestError, find_problems
from transformers_pre.artifacts.signing import ArtifactError

from . import artifacts
from .paths import MODEL_REPOSITORY

console = Console(stderr=True)
REPOSITORY = typer.Option(MODEL_REPOSITORY, "--repository", envvar="DUET_MODEL_REPOSITORY",
                          help="The Triton model repository (the artifact).")
KEY_FILE = typer.Option(..., "--key-file", envvar="DUET_ARTIFACT_KEY_FILE", exists=True, dir_okay=False,
                        help="File whose first line is the passphrase (as `openssl -pass file:`).")


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]{message}[/]")
    return typer.Exit(1)


def sign(
    repository: Path = REPOSITORY,
    private_key: Path | None = typer.Option(
        None, envvar="DUET_ARTIFACT_PRIVATE_KEY", exists=True, dir_okay=False,
        help="Elliptic-curve private key (PEM). Default: this user's development key (not for release)."),
    password_env: str | None = typer.Option(None, help="Environment variable holding the key's password."),
) -> None:
    """Write artifact.json (per-file sha256 and size) over the repository and sign everything (model.sig)."""
    if private_key is None:
        private_key = artifacts.ensure_dev_key(console.print).private
        console.print(f"[yellow]signing with the DEVELOPMENT key {private_key}: pass --private-key for a release[/]")
    password = os.environ[password_env] if password_env else None
    artifacts.sign_repository(repository, private_key, console.print, password)


def verify(
    repository: Path = REPOSITORY,
    public_key: Path | None = typer.Option(None, envvar="DUET_ARTIFACT_PUBLIC_KEY", dir_okay=False,
                                           help="Public key (PEM). Default: this user's development key."),
    digests_only: bool = typer.Option(False, help="Check artifact.json's digests only, not the signature."),
) -> None:
    """Check every file against artifact.json and the signature; exit 1 naming each file that differs."""
    try:
        if digests_only:
            problems = find_problems(repository)
            if problems:
                raise ArtifactError("; ".join(f"{relpath}: {reason}" for relpath, reason in problems))
            console.print(f"[green]digests match artifact.json[/] in {repository}")
        else:
            artifacts.verify_for_serving(repository, public_key, console.print)
    except (ArtifactError, ManifestError) as error:
        raise _fail(f"artifact check failed: {error}") from None


def keygen(
    private_key: Path = typer.Option(..., dir_okay=False, help="Where to write the private key (PEM, mode 0600)."),
    public_key: Path = typer.Option(..., dir_okay=False, help="Where to write the public key (PEM)."),
) -> None:
    """Create an elliptic-curve (P-256) key pair for signing releases on an air-gapped site."""
    if private_key.exists() or public_key.exists():
        raise _fail("refusing to overwrite an existing key")
    signing.generate_key_pair(private_key, public_key)
    console.print(f"wrote {private_key} (keep it secret) and {public_key} (give it to every cluster)")


def encrypt(
    repository: Path = REPOSITORY,
    key_file: Path = KEY_FILE,
    out: Path = typer.Option(Path(encryption.ENCRYPTED_NAME), help="The encrypted artifact to write."),
) -> None:
    """Write the signed repository as one encrypted tar, readable with
    `openssl enc -d -aes-256-cbc -pbkdf2 -iter 200000 -md sha256 -pass file:KEY`."""
    try:
        problems = find_problems(repository)
    except ManifestError as error:
        raise _fail(f"{error}: run `duet models sign` first") from None
    if problems:
        raise _fail("the repository does not match its manifest: "
                    + "; ".join(f"{relpath}: {reason}" for relpath, reason in problems))
    with console.status("encrypting") as status:
        count = encryption.encrypt_repository(repository, out, encryption.read_passphrase(key_file),
                                              lambda name: status.update(f"encrypting {name}"))
    console.print(f"wrote {out} ({count} files, {out.stat().st_size / 1e6:.1f} MB)")


def decrypt(
    source: Path = typer.Argument(..., exists=True, dir_okay=False, help="repository.tar.enc"),
    key_file: Path = KEY_FILE,
    out: Path = typer.Option(..., help="Folder to unpack into (memory-backed storage on a server)."),
) -> None:
    """Unpack an encrypted artifact and check its digests (verify the signature with `duet models verify`)."""
    try:
        with console.status("decrypting"):
            count = encryption.decrypt_repository(source, out, encryption.read_passphrase(key_file))
        problems = find_problems(out)
    except (encryption.DecryptionError, ManifestError) as error:
        raise _fail(f"{source}: {error}") from None
    if problems:
        raise _fail("; ".join(f"{relpath}: {reason}" for relpath, reason in problems))
    console.print(f"unpacked {count} files into {out}; digests match artifact.json")


def register(models_app: typer.Typer) -> None:
    for command in (sign, verify, keygen, encrypt, decrypt):
        models_app.command(command.__name__)(command)
