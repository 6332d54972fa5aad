"""repository.tar.enc against the real openssl binary, both ways, with the exact flags the pod uses."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from transformers_pre.artifacts import encryption, manifest
from transformers_pre.artifacts.check_digests import find_problems

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="the openssl binary is not installed")
PASSPHRASE = b"correct horse battery staple"


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "artifact.key"
    path.write_bytes(PASSPHRASE + b"\n")
    return path


@pytest.fixture
def listed(repository: Path) -> Path:
    manifest.write_manifest(repository)
    (repository / "model.sig").write_text('{"stand-in": "signature file travels with the artifact"}')
    return repository


def test_the_passphrase_is_the_first_line_of_the_key_file(key_file: Path) -> None:
    assert encryption.read_passphrase(key_file) == PASSPHRASE


def test_a_round_trip_restores_every_file_byte_for_byte(listed: Path, tmp_path: Path) -> None:
    target = tmp_path / "repository.tar.enc"
    assert encryption.encrypt_repository(listed, target, PASSPHRASE) == 8
    assert target.read_bytes().startswith(b"Salted__")
    restored = tmp_path / "restored"
    assert encryption.decrypt_repository(target, restored, PASSPHRASE) == 8
    assert find_problems(restored) == []
    assert (restored / "model.sig").read_bytes() == (listed / "model.sig").read_bytes()


def test_only_listed_files_are_packed(listed: Path, tmp_path: Path) -> None:
    (listed / "stray.tmp").write_text("not in the manifest")
    target = tmp_path / "repository.tar.enc"
    encryption.encrypt_repository(listed, target, PASSPHRASE)
    restored = tmp_path / "restored"
    encryption.decrypt_repository(target, restored, PASSPHRASE)
    assert not (restored / "stray.tmp").exists()


def test_the_wrong_key_is_refused(listed: Path, tmp_path: Path) -> None:
    target = tmp_path / "repository.tar.enc"
    encryption.encrypt_repository(listed, target, PASSPHRASE)
    with pytest.raises(encryption.DecryptionError):
        encryption.decrypt_repository(target, tmp_path / "restored", b"wrong")


def test_a_file_that_is_not_an_openssl_artifact_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "plain.tar"
    source.write_bytes(b"ustar" * 100)
    with pytest.raises(encryption.DecryptionError, match="Salted__"):
        encryption.decrypt_repository(source, tmp_path / "restored", PASSPHRASE)


@needs_openssl
def test_openssl_decrypts_what_duet_encrypts(listed: Path, tmp_path: Path, key_file: Path) -> None:
    target = tmp_path / "repository.tar.enc"
    encryption.encrypt_repository(listed, target, PASSPHRASE)
    plain = subprocess.run([OPENSSL, *encryption.OPENSSL_ARGS, "-d", "-in", str(target), "-pass",
                            f"file:{key_file}"], capture_output=True, check=True, timeout=120).stdout
    with tarfile.open(fileobj=io.BytesIO(plain)) as archive:
        restored = tmp_path / "restored"
        archive.extractall(restored, filter="data")
    assert find_problems(restored) == []


@needs_openssl
def test_duet_decrypts_what_openssl_encrypts(listed: Path, tmp_path: Path, key_file: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path in sorted(listed.rglob("*")):
            if path.is_file():
                archive.add(path, arcname=path.relative_to(listed).as_posix())
    target = tmp_path / "from-openssl.tar.enc"
    subprocess.run([OPENSSL, *encryption.OPENSSL_ARGS, "-salt", "-e", "-out", str(target), "-pass",
                    f"file:{key_file}"], input=buffer.getvalue(), check=True, timeout=120)
    restored = tmp_path / "restored"
    encryption.decrypt_repository(target, restored, PASSPHRASE)
    assert find_problems(restored) == []


@needs_openssl
def test_openssl_refuses_the_artifact_with_the_wrong_key(listed: Path, tmp_path: Path) -> None:
    target = tmp_path / "repository.tar.enc"
    encryption.encrypt_repository(listed, target, PASSPHRASE)
    wrong = tmp_path / "wrong.key"
    wrong.write_text("wrong\n")
    result = subprocess.run([OPENSSL, *encryption.OPENSSL_ARGS, "-d", "-in", str(target), "-pass",
                             f"file:{wrong}"], check=False, capture_output=True, timeout=120)
    assert result.returncode != 0
    assert b"bad decrypt" in result.stderr
