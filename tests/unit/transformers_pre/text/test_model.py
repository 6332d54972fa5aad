"""Sentiment post-processing: probabilities and their entropy."""

from __future__ import annotations

import numpy as np

from transformers_pre.text.model import entropy_nats, softmax


def test_softmax_is_stable_and_normalised() -> None:
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    probabilities = softmax(logits)
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(probabilities[1], [1 / 3] * 3, atol=1e-6)


def test_entropy_is_zero_for_certainty_and_ln3_for_uniform() -> None:
    entropy = entropy_nats(np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]], dtype=np.float32))
    np.testing.assert_allclose(entropy, [0.0, np.log(3)], atol=1e-6)
