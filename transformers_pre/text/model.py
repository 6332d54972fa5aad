"""The `sentiment` transformer: a kserve.Model in front of the Triton `sentiment` model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from kserve import InferRequest, InferResponse

from ..base import DuetModel
from ..codecs import bytes_tensor, decode_texts
from ..contract import ModelContract, TensorSpec
from ..errors import BadRequest
from ..metrics import PAYLOAD_BYTES, stage
from ..predictor_client import PredictorClient
from ..settings import Settings
from .tokenize import Encoded, TextTokenizer, cap_bytes

PUBLIC_NAME = "sentiment"
PREDICTOR_MODEL = "sentiment"


@dataclass(frozen=True)
class PreparedTexts:
    request: InferRequest
    encoded: Encoded
    cut: list[int]  # texts cut at max_text_bytes before tokenizing


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of FP32 logits [n, k], stable for large magnitudes."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exponentials = np.exp(shifted)
    return (exponentials / exponentials.sum(axis=1, keepdims=True)).astype(np.float32)


def entropy_nats(probabilities: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats of each row of probabilities [n, k]: 0 for a certain answer, ln k at most."""
    safe = np.clip(probabilities, np.finfo(np.float32).tiny, 1.0)
    return (-(probabilities * np.log(safe)).sum(axis=1)).astype(np.float32)


class SentimentModel(DuetModel):
    """Texts (BYTES [n], UTF-8) -> `probabilities` FP32 [n,3], `label` BYTES [n], `entropy` FP32 [n]."""

    contract = ModelContract(
        inputs=(TensorSpec("text", "BYTES", (-1,), "UTF-8 texts"),),
        outputs=(
            TensorSpec("probabilities", "FP32", (-1, "classes"), "softmax over the labels, in labels order"),
            TensorSpec("label", "BYTES", (-1,), "the most probable label"),
            TensorSpec("entropy", "FP32", (-1,), "entropy of probabilities, nats"),
        ),
    )

    def __init__(self, settings: Settings, predictor: PredictorClient) -> None:
        super().__init__(PUBLIC_NAME, PREDICTOR_MODEL, settings, predictor)
        self.labels: list[str] = []
        self.tokenizer: TextTokenizer | None = None

    def contract_dimensions(self) -> Mapping[str, int]:
        return {"classes": len(self.labels)} if self.labels else {}

    def metadata_parameters(self) -> dict[str, Any]:
        return {**super().metadata_parameters(), "labels": ",".join(self.labels)}

    def load(self) -> bool:
        folder = self.settings.model_repository / PREDICTOR_MODEL
        self.labels = (folder / "labels.txt").read_text().split()
        preprocess = json.loads((folder / "preprocess.json").read_text())
        max_length = self.settings.text.max_length or int(preprocess["max_length"])
        self.tokenizer = TextTokenizer(folder / "tokenizer.json", max_length)
        self.read_artifact()
        self.ready = True
        return self.ready

    async def preprocess(self, payload: InferRequest, headers: dict[str, str] | None = None) -> PreparedTexts:
        with stage(self.name, "intake"):
            texts = decode_texts(payload, self.contract.input.name)
            if not texts:
                raise BadRequest("input 'text' is empty: send at least one text")
            cap = self.settings.text.max_batch_texts
            if len(texts) > cap:
                raise BadRequest(f"{len(texts)} texts in one request; the limit is {cap}")
            PAYLOAD_BYTES.labels(self.name).observe(sum(len(text.encode("utf-8")) for text in texts))
        with stage(self.name, "tokenize"):
            assert self.tokenizer is not None
            texts, cut = cap_bytes(texts, self.settings.text.max_text_bytes)
            encoded = self.tokenizer.encode(texts)
        return PreparedTexts(request=payload, encoded=encoded, cut=cut)

    async def predict(self, prepared: PreparedTexts, headers: dict[str, str] | None = None) -> Any:
        chunk = self.settings.text.predictor_batch
        encoded = prepared.encoded
        with stage(self.name, "predictor"):
            # Chunks go out concurrently so Triton's dynamic batcher can pack them with other requests.
            replies = await asyncio.gather(
                *(
                    self.predictor.infer(
                        PREDICTOR_MODEL,
                        {
                            "input_ids": encoded.input_ids[start : start + chunk],
                            "attention_mask": encoded.attention_mask[start : start + chunk],
                        },
                        ["logits"],
                    )
                    for start in range(0, len(encoded.input_ids), chunk)
                )
            )
        logits = np.concatenate([reply["logits"] for reply in replies]).astype(np.float32)
        return prepared, logits

    async def postprocess(
        self, result: Any, headers: dict[str, str] | None = None, response_headers: dict[str, str] | None = None
    ) -> InferResponse:
        prepared, logits = result
        with stage(self.name, "postprocess"):
            probabilities = softmax(logits)
            labels = bytes_tensor([self.labels[index] for index in probabilities.argmax(axis=1)])
            parameters: dict[str, Any] = {"max_length": self.tokenizer.max_length if self.tokenizer else 0}
            truncated = sorted(set(prepared.encoded.truncated) | set(prepared.cut))
            if truncated:
                parameters["truncated"] = ",".join(str(index) for index in truncated)
            return self.respond(
                prepared.request,
                {"probabilities": probabilities, "label": labels, "entropy": entropy_nats(probabilities)},
                parameters=parameters,
            )
