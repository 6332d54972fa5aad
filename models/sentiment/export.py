"""ONNX export of the classifier (FP32 and dynamically quantized INT8) and its check against torch."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from rich.progress import Progress
from tokenizers import Tokenizer

from models.sentiment.model import SentimentClassifier, encode

INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "logits"
VERIFY_BATCH_SIZES = (1, 3, 8)
VERIFY_TOLERANCE = 1e-4


@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """Silence the exporter's stage prints, warnings and the named loggers (below ERROR) so they do not tear
    through the caller's rich progress display."""
    levels = {name: logging.getLogger(name).level for name in loggers}
    try:
        for name in loggers:
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


class ExportMismatchError(RuntimeError):
    """ONNX Runtime disagrees with torch beyond tolerance, or the graph breaks the predictor contract."""


def export_fp32(
    model: SentimentClassifier, example: tuple[np.ndarray, np.ndarray], path: Path, opset: int
) -> None:
    """Write the classifier as a single-file ONNX graph with dynamic batch and sequence axes.

    `example` (input_ids, attention_mask) should have batch > 1 and a sequence length that is neither 0 nor 1,
    so the tracer does not specialise either axis.
    """
    model.eval()
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    dynamic = {"input_ids": {0: batch, 1: sequence}, "attention_mask": {0: batch, 1: sequence}}
    path.parent.mkdir(parents=True, exist_ok=True)
    # The exporter prints its stages and warns that optional torchvision ops are missing.
    with _quiet("torch.onnx"):
        torch.onnx.export(
            model,
            (torch.from_numpy(example[0]), torch.from_numpy(example[1])),
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamic_shapes=dynamic,
            external_data=False,
            dynamo=True,
            verbose=False,
        )
    onnx.checker.check_model(str(path))


def export_int8(fp32_path: Path, int8_path: Path) -> None:
    """Dynamically quantize the FP32 graph's weights to INT8 (activations quantized at run time) for CPU serving."""
    # The quantizer logs a generic "consider pre-processing" hint on the root logger for every model.
    with _quiet(""):
        quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)


def session(path: Path, threads: int = 0) -> ort.InferenceSession:
    """A CPU ONNX Runtime session (`threads` 0 lets ONNX Runtime choose)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_contract(sess: ort.InferenceSession) -> None:
    """Raise unless the graph has inputs input_ids/attention_mask INT64 [B, L] and output logits FP32 [B, 3]."""
    inputs = {i.name: i for i in sess.get_inputs()}
    outputs = {o.name: o for o in sess.get_outputs()}
    for name in INPUT_NAMES:
        if name not in inputs or inputs[name].type != "tensor(int64)" or len(inputs[name].shape) != 2:
            raise ExportMismatchError(f"input {name} must be INT64 [B, L], got {inputs.get(name)}")
        if any(isinstance(d, int) for d in inputs[name].shape):
            raise ExportMismatchError(
                f"input {name} must have dynamic batch and sequence axes: {inputs[name].shape}"
            )
    logits = outputs.get(OUTPUT_NAME)
    if logits is None or logits.type != "tensor(float)" or len(logits.shape) != 2 or logits.shape[1] != 3:
        raise ExportMismatchError(f"output {OUTPUT_NAME} must be FP32 [B, 3], got {logits}")


def run_logits(sess: ort.InferenceSession, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Logits FP32 [B, 3] from an ONNX Runtime session."""
    return sess.run([OUTPUT_NAME], {"input_ids": input_ids, "attention_mask": attention_mask})[0]


@torch.inference_mode()
def verify_against_torch(
    model: SentimentClassifier, sess: ort.InferenceSession, encoder: Tokenizer, texts: list[str]
) -> dict[str, float]:
    """Max abs logit difference between ONNX Runtime and torch for batches of 1, 3 and 8 real sentences.

    Raises `ExportMismatchError` when any exceeds `VERIFY_TOLERANCE`, which fails the build.
    """
    model.eval()
    check_contract(sess)
    diffs: dict[str, float] = {}
    start = 0
    for size in VERIFY_BATCH_SIZES:
        input_ids, attention_mask = encode(encoder, texts[start : start + size])
        start += size
        reference = model(torch.from_numpy(input_ids), torch.from_numpy(attention_mask)).numpy()
        got = run_logits(sess, input_ids, attention_mask)
        if got.shape != (size, 3) or got.dtype != np.float32:
            raise ExportMismatchError(f"batch {size}: ONNX Runtime returned {got.dtype} {got.shape}")
        diffs[f"batch_{size}"] = float(np.abs(got - reference).max())
    worst = max(diffs.values())
    if not worst <= VERIFY_TOLERANCE:
        raise ExportMismatchError(
            f"ONNX Runtime differs from torch by {worst:.2e} > {VERIFY_TOLERANCE}: {diffs}"
        )
    return diffs


def onnx_logits(
    sess: ort.InferenceSession,
    encoder: Tokenizer,
    texts: list[str],
    progress: Progress,
    description: str,
    batch_size: int = 64,
) -> np.ndarray:
    """Logits FP32 [N, 3] from an ONNX Runtime session, batches padded to their longest sentence."""
    task = progress.add_task(description, total=len(texts))
    chunks: list[np.ndarray] = []
    for start in range(0, len(texts), batch_size):
        input_ids, attention_mask = encode(encoder, texts[start : start + batch_size])
        chunks.append(run_logits(sess, input_ids, attention_mask))
        progress.update(task, advance=len(input_ids))
    return np.concatenate(chunks)
