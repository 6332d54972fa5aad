"""Full fine-tuning of the sentiment classifier and batched inference, with rich progress."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from rich.progress import Progress
from tokenizers import Tokenizer
from transformers import get_linear_schedule_with_warmup

from predictors.sentiment.model import SentimentClassifier, encode


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser settings; `max_steps` (when set) stops early, for the quick test build."""

    seed: int
    epochs: int
    learning_rate: float
    batch_size: int
    weight_decay: float
    warmup_fraction: float
    grad_clip_norm: float
    max_steps: int | None = None


def fine_tune(
    model: SentimentClassifier,
    encoder: Tokenizer,
    texts: list[str],
    labels: np.ndarray,
    config: TrainConfig,
    progress: Progress,
) -> list[float]:
    """Train every parameter (encoder and head) with AdamW and a linear warmup/decay schedule.

    Batches are drawn from a permutation seeded by `config.seed` and padded to their longest sentence.
    Returns the training loss of each step.
    """
    generator = torch.Generator().manual_seed(config.seed)
    order = torch.cat([torch.randperm(len(texts), generator=generator) for _ in range(config.epochs)])
    batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    if config.max_steps is not None:
        batches = batches[: config.max_steps]
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    schedule = get_linear_schedule_with_warmup(
        optimizer,
        num_warmup_steps=round(config.warmup_fraction * len(batches)),
        num_training_steps=len(batches),
    )
    target = torch.from_numpy(labels)
    task = progress.add_task("sentiment: fine-tune", total=len(batches))
    losses: list[float] = []
    model.train()
    torch.manual_seed(config.seed)  # dropout masks
    for batch in batches:
        input_ids, attention_mask = encode(encoder, [texts[i] for i in batch.tolist()])
        logits = model(torch.from_numpy(input_ids), torch.from_numpy(attention_mask))
        loss = torch.nn.functional.cross_entropy(logits, target[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        window = losses[-20:]
        progress.update(
            task, advance=1, description=f"sentiment: fine-tune (loss {sum(window) / len(window):.3f})"
        )
    model.eval()
    return losses


@torch.inference_mode()
def predict_logits(
    model: SentimentClassifier,
    encoder: Tokenizer,
    texts: list[str],
    progress: Progress,
    description: str,
    batch_size: int = 64,
) -> np.ndarray:
    """Logits FP32 [N, n_classes] of the model in eval mode, batches padded to their longest sentence."""
    model.eval()
    task = progress.add_task(description, total=len(texts))
    chunks: list[np.ndarray] = []
    for start in range(0, len(texts), batch_size):
        input_ids, attention_mask = encode(encoder, texts[start : start + batch_size])
        chunks.append(model(torch.from_numpy(input_ids), torch.from_numpy(attention_mask)).numpy())
        progress.update(task, advance=len(input_ids))
    return np.concatenate(chunks).astype(np.float32)
