"""Full fine-tuning of the sentiment classifier and batched inference, with rich progress."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from rich.progress import Progress
from tokenizers import Tokenizer
from transformers import get_linear_schedule_with_warmup

from models.sentiment.model import SentimentClassifier, encode


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
    length_group_batches: int
    max_steps: int | None = None


def length_grouped_batches(
    lengths: np.ndarray, batch_size: int, group_batches: int, epochs: int, seed: int
) -> list[np.ndarray]:
    """Index batches for `epochs` passes: a seeded shuffle, cut into groups of `group_batches` batches, each
    group sorted by token length before it is cut into batches, then the batches themselves shuffled.

    Sentences of similar length share a batch, so padding (to the batch's longest) wastes about half as much
    compute as with a plain shuffle, while batch order and membership stay random from one group to the next.
    """
    generator = torch.Generator().manual_seed(seed)
    group = batch_size * group_batches
    batches: list[np.ndarray] = []
    for _ in range(epochs):
        order = torch.randperm(len(lengths), generator=generator).numpy()
        for start in range(0, len(order), group):
            chunk = order[start : start + group]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffled]


def fine_tune(
    model: SentimentClassifier,
    encoder: Tokenizer,
    texts: list[str],
    labels: np.ndarray,
    config: TrainConfig,
    progress: Progress,
) -> list[float]:
    """Train every parameter (encoder and head) with AdamW and a linear warmup/decay schedule.

    Batches come from `length_grouped_batches` (seeded by `config.seed`) and are padded to their longest
    sentence. Returns the training loss of each step.
    """
    lengths = encode(encoder, texts)[1].sum(axis=1)
    batches = length_grouped_batches(
        lengths, config.batch_size, config.length_group_batches, config.epochs, config.seed
    )
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
        input_ids, attention_mask = encode(encoder, [texts[i] for i in batch])
        logits = model(torch.from_numpy(input_ids), torch.from_numpy(attention_mask))
        loss = torch.nn.functional.cross_entropy(logits, target[torch.from_numpy(batch)])
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
