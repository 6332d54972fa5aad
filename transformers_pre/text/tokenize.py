"""Tokenisation with HF `tokenizers`, from the tokenizer.json that lives beside the model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer


@dataclass(frozen=True)
class Encoded:
    """A tokenised batch padded to its longest sequence."""

    input_ids: np.ndarray  # int64 [n, L]
    attention_mask: np.ndarray  # int64 [n, L]
    truncated: list[int]  # indices of the texts cut at max_length


def cap_bytes(texts: list[str], max_bytes: int) -> tuple[list[str], list[int]]:
    """Each text cut to at most `max_bytes` UTF-8 bytes (never inside a character), and the indices that were cut."""
    capped: list[str] = []
    cut: list[int] = []
    for index, text in enumerate(texts):
        # A str of n characters encodes to at most 4n bytes: most texts need no encoding to be cleared.
        if len(text) * 4 > max_bytes:
            encoded = text.encode("utf-8")
            if len(encoded) > max_bytes:
                text = encoded[:max_bytes].decode("utf-8", "ignore")
                cut.append(index)
        capped.append(text)
    return capped, cut


class TextTokenizer:
    """Pads to the longest text of the batch and truncates at the model's max length."""

    def __init__(self, tokenizer_file: Path, max_length: int) -> None:
        self.max_length = max_length
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.enable_truncation(max_length=max_length)
        pad_token = (self._tokenizer.padding or {}).get("pad_token", "[PAD]")
        pad_id = self._tokenizer.token_to_id(pad_token)
        if pad_id is None:
            raise ValueError(f"{tokenizer_file} has no padding token {pad_token!r}")
        # No fixed length: pad to the longest text of each batch.
        self._tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)

    def encode(self, texts: list[str]) -> Encoded:
        """Token ids and attention mask, int64 [n, L] with L the longest tokenised text (<= max_length)."""
        encodings = self._tokenizer.encode_batch(texts)
        input_ids = np.array([encoding.ids for encoding in encodings], dtype=np.int64)
        attention_mask = np.array([encoding.attention_mask for encoding in encodings], dtype=np.int64)
        truncated = [row for row, encoding in enumerate(encodings) if encoding.overflowing]
        return Encoded(input_ids=input_ids, attention_mask=attention_mask, truncated=truncated)
