"""The baseline duet is measured against: what a team writes itself in an afternoon.

One FastAPI process (uvicorn, one worker), the same `model.onnx` and `tokenizer.json` duet serves, ONNX Runtime
with its default session options, one `session.run` per request, no batching across requests, no metrics and no
access log. It answers the same v2 JSON request as duet's `sentiment` model with the same three outputs, so the
same load generator drives both:

    python benchmarks/naive_sentiment_server.py --model-dir models/model_repository/sentiment --port 8090

It exists for `duet bench` only; nothing in duet imports it.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from tokenizers import Tokenizer


def providers() -> list[str]:
    """ONNX Runtime execution providers: DUET_ORT_PROVIDERS (comma-separated, e.g. "CUDAExecutionProvider,
    CPUExecutionProvider" on a GPU machine), else the CPU."""
    return [p for p in os.environ.get("DUET_ORT_PROVIDERS", "CPUExecutionProvider").split(",") if p]


class TensorIn(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[str]


class InferBody(BaseModel):
    inputs: list[TensorIn]


def build_app(model_dir: Path) -> FastAPI:
    """The naive app: tokenize, run, softmax, per request, in FastAPI's thread pool."""
    session = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=providers())
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    max_length = int(json.loads((model_dir / "preprocess.json").read_text())["max_length"])
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding()
    labels = (model_dir / "labels.txt").read_text().split()
    app = FastAPI()

    @app.get("/v2/health/ready")
    def ready() -> dict:
        return {"ready": True}

    @app.post("/v2/models/sentiment/infer")
    def infer(body: InferBody) -> dict:
        texts = body.inputs[0].data
        encodings = tokenizer.encode_batch(texts)
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }
        (logits,) = session.run(["logits"], feeds)
        exps = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = exps / exps.sum(axis=1, keepdims=True)
        entropy = -(probabilities * np.log(np.clip(probabilities, 1e-12, 1.0))).sum(axis=1)
        n = len(texts)
        return {
            "model_name": "sentiment",
            "outputs": [
                {"name": "probabilities", "shape": [n, 3], "datatype": "FP32",
                 "data": probabilities.reshape(-1).tolist()},
                {"name": "label", "shape": [n], "datatype": "BYTES",
                 "data": [labels[i] for i in probabilities.argmax(axis=1)]},
                {"name": "entropy", "shape": [n], "datatype": "FP32", "data": entropy.tolist()},
            ],
        }

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    uvicorn.run(build_app(args.model_dir), host=args.host, port=args.port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
