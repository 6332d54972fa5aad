"""Length-grouped batching for the sentiment fine-tune."""

from __future__ import annotations

import numpy as np

from models.sentiment.train import length_grouped_batches


def _lengths(n: int = 1000) -> np.ndarray:
    return np.random.default_rng(7).integers(3, 65, size=n)


def test_every_sentence_once_per_epoch() -> None:
    lengths = _lengths()
    batches = length_grouped_batches(lengths, batch_size=32, group_batches=4, epochs=2, seed=0)
    counts = np.bincount(np.concatenate(batches), minlength=len(lengths))
    assert (counts == 2).all()
    assert max(len(b) for b in batches) == 32


def test_same_seed_same_batches_other_seed_other_batches() -> None:
    lengths = _lengths()
    first = length_grouped_batches(lengths, 32, 4, 1, seed=0)
    again = length_grouped_batches(lengths, 32, 4, 1, seed=0)
    other = length_grouped_batches(lengths, 32, 4, 1, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_grouping_cuts_padding_against_a_plain_shuffle() -> None:
    lengths = _lengths()
    grouped = length_grouped_batches(lengths, 32, group_batches=8, epochs=1, seed=0)
    plain = length_grouped_batches(lengths, 32, group_batches=1, epochs=1, seed=0)

    def padded_tokens(batches: list[np.ndarray]) -> int:
        return sum(len(b) * int(lengths[b].max()) for b in batches)

    assert padded_tokens(grouped) < 0.75 * padded_tokens(plain)
    # Batch order is shuffled, not sorted by length.
    maxima = [int(lengths[b].max()) for b in grouped]
    assert maxima != sorted(maxima)
