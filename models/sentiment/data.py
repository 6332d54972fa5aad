"""The NYT editorial sentences of Hutto & Gilbert (2014), read from the `vaderSentiment` sdist.

The sentences are fetched at build time as a package from PyPI by name, checked against a pinned sha256 and read
straight from the nested tarballs in memory: they are never extracted to disk or written into the repository.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.cards import sha256_file

SDIST_REQUIREMENT = "vaderSentiment==3.3.2"
SDIST_FILENAME = "vaderSentiment-3.3.2.tar.gz"
# Measured once from PyPI's vaderSentiment-3.3.2.tar.gz; a different file means a different data set.
SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
INNER_ARCHIVE = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
NYT_MEMBER = "hutto_ICWSM_2014/nytEditorialSnippets_GroundTruth.txt"

LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
NEGATIVE_BELOW = -0.5
POSITIVE_ABOVE = 0.5
# One editorial in five goes to the held-out split (about 80/20 of the sentences), decided by the document id
# alone: every sentence of an editorial sits on the same side, so no editorial's wording or topic leaks.
TEST_BUCKETS = 5
SPLIT_RULE = (
    f"by editorial: sha256(document id, the part of the sentence id before '_') first 8 bytes big-endian "
    f"mod {TEST_BUCKETS} == 0 -> test; every sentence of an editorial on one side"
)


@dataclass(frozen=True)
class Sentences:
    """Parallel arrays of the corpus: sentence ids (`"<document>_<sentence>"`), texts and mean ratings.

    Mean ratings are on the study's -4 (most negative) .. +4 (most positive) scale, averaged over 20 raters.
    """

    ids: list[str]
    texts: list[str]
    means: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: np.ndarray) -> Sentences:
        """The sentences at the given integer positions, in that order."""
        return Sentences(
            ids=[self.ids[i] for i in index],
            texts=[self.texts[i] for i in index],
            means=self.means[index],
        )


class DataIntegrityError(RuntimeError):
    """The downloaded sdist is not the pinned file, or it lacks the expected member."""


def cache_dir() -> Path:
    """`${DUET_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/duet}/data`, created if missing."""
    root = os.environ.get("DUET_CACHE_DIR")
    if root is None:
        root = str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "duet")
    path = Path(root).expanduser() / "data"
    path.mkdir(parents=True, exist_ok=True)
    return path


def fetch_sdist(directory: Path | None = None) -> Path:
    """Path of the verified `vaderSentiment` sdist in the cache, downloading it with pip when absent.

    A cached file whose hash differs from the pin is replaced by a fresh download; a download whose hash differs
    raises `DataIntegrityError`.
    """
    directory = cache_dir() if directory is None else directory
    target = directory / SDIST_FILENAME
    if target.is_file() and sha256_file(target) == SDIST_SHA256:
        return target
    with tempfile.TemporaryDirectory(dir=directory, prefix=".download-") as scratch:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--disable-pip-version-check",
            "--quiet",
            SDIST_REQUIREMENT,
            "-d",
            scratch,
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        downloaded = Path(scratch) / SDIST_FILENAME
        if result.returncode != 0 or not downloaded.is_file():
            raise DataIntegrityError(
                f"pip download of {SDIST_REQUIREMENT} failed (exit {result.returncode}): "
                f"{result.stderr.strip()[-2000:]}"
            )
        digest = sha256_file(downloaded)
        if digest != SDIST_SHA256:
            raise DataIntegrityError(
                f"{SDIST_FILENAME} has sha256 {digest}, expected {SDIST_SHA256}; refusing to train on it"
            )
        os.replace(downloaded, target)
    return target


def read_sentences(sdist: Path) -> Sentences:
    """Parse the NYT editorial ground truth (id, mean rating, text) from the nested tarballs, in memory."""
    if sha256_file(sdist) != SDIST_SHA256:
        raise DataIntegrityError(f"{sdist} is not the pinned {SDIST_FILENAME} (sha256 mismatch)")
    with tarfile.open(sdist, mode="r:gz") as outer:
        inner_file = outer.extractfile(INNER_ARCHIVE)
        if inner_file is None:
            raise DataIntegrityError(f"{INNER_ARCHIVE} missing from {sdist.name}")
        inner_bytes = inner_file.read()
    with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
        member = inner.extractfile(NYT_MEMBER)
        if member is None:
            raise DataIntegrityError(f"{NYT_MEMBER} missing from {INNER_ARCHIVE}")
        text = member.read().decode("utf-8")
    ids: list[str] = []
    texts: list[str] = []
    means: list[float] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        sentence_id, mean, sentence = line.split("\t", 2)
        ids.append(sentence_id)
        means.append(float(mean))
        texts.append(sentence.strip())
    return Sentences(ids=ids, texts=texts, means=np.asarray(means, dtype=np.float64))


def label_of(means: np.ndarray) -> np.ndarray:
    """Class index per mean rating in `LABELS` order: < -0.5 negative (0), > 0.5 positive (2), else neutral (1).

    Both boundaries (-0.5 and 0.5 exactly) are neutral.
    """
    means = np.asarray(means, dtype=np.float64)
    return np.where(means < NEGATIVE_BELOW, 0, np.where(means > POSITIVE_ABOVE, 2, 1)).astype(np.int64)


def document_of(ids: list[str]) -> list[str]:
    """The editorial (document) id of each sentence id `"<document>_<sentence>"`."""
    documents = []
    for sentence_id in ids:
        document, separator, _ = sentence_id.partition("_")
        if not separator or not document:
            raise ValueError(f"sentence id {sentence_id!r} is not '<document>_<sentence>'")
        documents.append(document)
    return documents


def is_held_out(ids: list[str]) -> np.ndarray:
    """Boolean mask, True for the test split (~20 % of the editorials), from the sha256 of each document id.

    A cryptographic hash (unlike Python's salted `hash()`) gives the same split on every machine and run; an
    editorial keeps its side when others are added or removed, and all its sentences share that side.
    """
    buckets = [
        int.from_bytes(hashlib.sha256(d.encode("utf-8")).digest()[:8], "big") % TEST_BUCKETS
        for d in document_of(ids)
    ]
    return np.asarray(buckets, dtype=np.int64) == 0


def split(sentences: Sentences) -> tuple[Sentences, Sentences]:
    """(train, test) subsets of the corpus, each in corpus order."""
    held_out = is_held_out(sentences.ids)
    return sentences.subset(np.flatnonzero(~held_out)), sentences.subset(np.flatnonzero(held_out))
