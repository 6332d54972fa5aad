"""Encryption at rest: a tar of the repository in the format of
`openssl enc -aes-256-cbc -pbkdf2 -iter 200000 -md sha256 -salt`, so a container with only the openssl CLI and
tar can decrypt it (`openssl enc -d ... -pass file:KEY | tar -x`).

That format: b"Salted__", an 8-byte random salt, then AES-256-CBC with PKCS#7 padding, whose key and IV are the
first 32 and next 16 bytes of PBKDF2-HMAC-SHA256(passphrase, salt, iterations).
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from .check_digests import MANIFEST, SIGNATURE, load_manifest

MAGIC = b"Salted__"
ITERATIONS = 200_000
OPENSSL_ARGS = ("enc", "-aes-256-cbc", "-pbkdf2", "-iter", str(ITERATIONS), "-md", "sha256")
ENCRYPTED_NAME = "repository.tar.enc"


class DecryptionError(ValueError):
    """Not an artifact this key opens: wrong key, another format, or a damaged file."""


def read_passphrase(key_file: Path) -> bytes:
    """The passphrase as `openssl -pass file:KEY_FILE` takes it: the first line, without its line end."""
    first_line = key_file.read_bytes().split(b"\n", 1)[0].rstrip(b"\r")
    if not first_line:
        raise ValueError(f"{key_file}: the first line (the passphrase) is empty")
    return first_line


def _cipher(passphrase: bytes, salt: bytes) -> Cipher:
    derived = PBKDF2HMAC(algorithm=hashes.SHA256(), length=48, salt=salt, iterations=ITERATIONS).derive(passphrase)
    return Cipher(algorithms.AES256(derived[:32]), modes.CBC(derived[32:]))


class _EncryptingWriter(io.RawIOBase):
    def __init__(self, out: io.BufferedIOBase, passphrase: bytes) -> None:
        salt = os.urandom(8)
        out.write(MAGIC + salt)
        self._out = out
        self._encryptor = _cipher(passphrase, salt).encryptor()
        self._padder = padding.PKCS7(128).padder()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:
        self._out.write(self._encryptor.update(self._padder.update(bytes(data))))
        return len(data)

    def finish(self) -> None:
        self._out.write(self._encryptor.update(self._padder.finalize()) + self._encryptor.finalize())


class _DecryptingReader(io.RawIOBase):
    def __init__(self, source: io.BufferedIOBase, passphrase: bytes) -> None:
        header = source.read(16)
        if len(header) != 16 or not header.startswith(MAGIC):
            raise DecryptionError("not an `openssl enc -salt` file (no Salted__ header)")
        self._source = source
        self._decryptor = _cipher(passphrase, header[8:]).decryptor()
        self._unpadder = padding.PKCS7(128).unpadder()
        self._buffer = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray) -> int:
        while len(self._buffer) < len(target) and not self._done:
            chunk = self._source.read(1 << 20)
            if chunk:
                self._buffer += self._unpadder.update(self._decryptor.update(chunk))
            else:
                try:
                    self._buffer += self._unpadder.update(self._decryptor.finalize()) + self._unpadder.finalize()
                except ValueError:
                    raise DecryptionError("bad decrypt: wrong key or damaged file") from None
                self._done = True
        count = min(len(target), len(self._buffer))
        target[:count] = self._buffer[:count]
        self._buffer = self._buffer[count:]
        return count


def encrypt_repository(directory: Path, target: Path, passphrase: bytes,
                       progress: Callable[[str], None] | None = None) -> int:
    """Write `target`: the encrypted tar of exactly the files artifact.json lists, plus artifact.json and
    model.sig (so the pod verifies after decrypting). Returns the number of files."""
    manifest = load_manifest(directory)
    names = sorted(manifest["files"]) + [name for name in (MANIFEST, SIGNATURE) if (directory / name).exists()]
    partial = target.with_name(target.name + ".partial")
    with partial.open("wb") as out:
        writer = _EncryptingWriter(out, passphrase)
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as archive:
            for name in names:
                if progress:
                    progress(name)
                archive.add(directory / name, arcname=name, recursive=False)
        writer.finish()
    partial.replace(target)
    return len(names)


def decrypt_repository(source: Path, directory: Path, passphrase: bytes) -> int:
    """Unpack the encrypted tar `source` into `directory` (tar's safe "data" filter: no absolute paths, links
    out or device files). Returns the number of files. Verify the result before serving it."""
    directory.mkdir(parents=True, exist_ok=True)
    count = 0
    with source.open("rb") as handle:
        reader = io.BufferedReader(_DecryptingReader(handle, passphrase), 1 << 20)
        try:
            with tarfile.open(fileobj=reader, mode="r|") as archive:
                for member in archive:
                    archive.extract(member, directory, filter="data")
                    count += member.isfile()
        except tarfile.TarError as error:
            raise DecryptionError(f"not a tar after decrypting (wrong key?): {error}") from None
    return count
