"""The sentiment data loader: pinned sdist, in-memory parsing, label thresholds and the 80/20 split by editorial."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from models.sentiment import data


@pytest.fixture(scope="module")
def sentences() -> data.Sentences:
    # Downloads the sdist from PyPI once into the shared cache (allowed: a package by name).
    return data.read_sentences(data.fetch_sdist())


def test_labels_at_and_around_the_thresholds() -> None:
    means = np.array([-4.0, -0.51, -0.5, -0.49, 0.0, 0.49, 0.5, 0.51, 4.0])
    assert data.label_of(means).tolist() == [0, 0, 1, 1, 1, 1, 1, 2, 2]
    assert data.LABELS == ("negative", "neutral", "positive")


def test_label_of_returns_int64_per_rating() -> None:
    labels = data.label_of(np.array([-1.0, 1.0]))
    assert labels.dtype == np.int64
    assert labels.shape == (2,)


def test_split_is_a_stable_hash_of_the_document() -> None:
    ids = [f"{doc}_{sentence}" for doc in range(1, 200) for sentence in range(1, 8)]
    first = data.is_held_out(ids)
    assert np.array_equal(first, data.is_held_out(list(ids)))
    # Membership depends on the id alone, not on its position or neighbours.
    assert np.array_equal(data.is_held_out(ids[::-1])[::-1], first)
    assert 0.15 < first.mean() < 0.25
    # Every sentence of a document shares its side, whatever its sentence number.
    by_document = first.reshape(199, 7)
    assert (by_document == by_document[:, :1]).all()
    assert data.is_held_out(["12_1"])[0] == data.is_held_out(["12_999"])[0]


def test_document_of_rejects_an_id_without_a_document() -> None:
    assert data.document_of(["17_3", "204_11"]) == ["17", "204"]
    with pytest.raises(ValueError, match="'173'"):
        data.document_of(["173"])


def test_cache_dir_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DUET_CACHE_DIR", str(tmp_path / "explicit"))
    assert data.cache_dir() == tmp_path / "explicit" / "data"
    monkeypatch.delenv("DUET_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.cache_dir() == tmp_path / "xdg" / "duet" / "data"
    assert data.cache_dir().is_dir()


@pytest.mark.slow
def test_corpus_parses_from_the_pinned_sdist(sentences: data.Sentences) -> None:
    assert len(sentences) == 5190
    assert len(set(sentences.ids)) == len(sentences)
    assert all(text and "\t" not in text for text in sentences.texts)
    assert sentences.means.min() >= -4 and sentences.means.max() <= 4
    counts = np.bincount(data.label_of(sentences.means), minlength=3)
    assert counts.tolist() == [1688, 2402, 1100]


@pytest.mark.slow
def test_split_is_disjoint_complete_and_deterministic(sentences: data.Sentences) -> None:
    train, test = data.split(sentences)
    again_train, again_test = data.split(sentences)
    assert train.ids == again_train.ids and test.ids == again_test.ids
    assert not set(train.ids) & set(test.ids)
    # No editorial has sentences on both sides.
    assert not set(data.document_of(train.ids)) & set(data.document_of(test.ids))
    assert sorted(train.ids + test.ids) == sorted(sentences.ids)
    assert 0.15 < len(test) / len(sentences) < 0.23
    # Every class is present on both sides.
    assert (np.bincount(data.label_of(test.means), minlength=3) > 100).all()
    assert (np.bincount(data.label_of(train.means), minlength=3) > 500).all()


def test_a_tampered_sdist_is_refused(tmp_path: Path) -> None:
    tampered = tmp_path / data.SDIST_FILENAME
    shutil.copyfile(data.fetch_sdist(), tampered)
    with tampered.open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(data.DataIntegrityError, match="sha256"):
        data.read_sentences(tampered)
