"""The ceiling: ONNX Runtime alone on the sentiment model file, no server, no tokenizer, no copies.

    python benchmarks/ort_ceiling.py --model-dir models/model_repository/sentiment --batch 1 --seconds 5

Feeds pre-tokenised synthetic headlines (padded to the longest of each batch, as every server here does) to one
`InferenceSession` with its default options (one intra-op thread per core) in a closed loop, and prints one JSON
object: texts per second, calls per second and the median milliseconds per call. Run in its own process by
`duet bench`, beside (not during) the server runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer


def providers() -> list[str]:
    """ONNX Runtime execution providers: DUET_ORT_PROVIDERS (comma-separated, e.g. "CUDAExecutionProvider,
    CPUExecutionProvider" on a GPU machine), else the CPU."""
    return [p for p in os.environ.get("DUET_ORT_PROVIDERS", "CPUExecutionProvider").split(",") if p]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from loadtests.payloads import headlines


def measure(model_dir: Path, batch: int, seconds: float) -> dict[str, float]:
    """Closed-loop `session.run` calls of `batch` texts for `seconds`; returns rates and the median call time."""
    session = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=providers())
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_padding()
    texts = headlines(4096, seed=1)
    feeds = []
    for start in range(0, 256 * batch, batch):
        encodings = tokenizer.encode_batch(texts[start:start + batch])
        feeds.append({"input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                      "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64)})
    for feed in feeds[:5]:  # warm-up: first calls allocate and plan
        session.run(["logits"], feed)
    calls: list[float] = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        feed = feeds[len(calls) % len(feeds)]
        before = time.perf_counter()
        session.run(["logits"], feed)
        calls.append(time.perf_counter() - before)
    elapsed = time.perf_counter() - started
    return {"batch": batch, "texts_per_s": len(calls) * batch / elapsed, "calls_per_s": len(calls) / elapsed,
            "median_ms": 1000 * statistics.median(calls)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(json.dumps(measure(args.model_dir, args.batch, args.seconds)))


if __name__ == "__main__":
    main()
