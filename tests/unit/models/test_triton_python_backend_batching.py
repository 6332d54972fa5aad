"""The batching both local predictors share: pad, concatenate, one ONNX Runtime call, split back."""

from __future__ import annotations

import numpy as np
import pytest

from duet.paths import MODEL_REPOSITORY
from models.triton_python_backend.batching import concatenate, pad_to, split
from transformers_pre.registry import MODELS


def test_requests_are_padded_to_the_longest_and_split_back_in_order() -> None:
    first = {"ids": np.array([[1, 2, 3]], np.int64), "mask": np.ones((1, 3), np.int64)}
    second = {"ids": np.array([[4, 5, 6, 7, 8], [9, 1, 0, 0, 0]], np.int64), "mask": np.ones((2, 5), np.int64)}
    feeds, sizes = concatenate([first, second], ["ids", "mask"])
    assert sizes == [1, 2]
    assert feeds["ids"].tolist() == [[1, 2, 3, 0, 0], [4, 5, 6, 7, 8], [9, 1, 0, 0, 0]]
    assert feeds["mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]]
    outputs = split([feeds["ids"].sum(axis=1), feeds["ids"] * 2], sizes)
    assert [len(rows) for rows in outputs] == [2, 2]
    assert outputs[0][0].tolist() == [6] and outputs[1][0].tolist() == [30, 10]
    assert outputs[1][1].flags.c_contiguous and outputs[1][1].shape == (2, 5)


def test_fixed_shapes_are_not_copied() -> None:
    image = np.zeros((2, 1, 8, 6), np.float32)
    assert pad_to(image, (5, 1, 8, 6)) is image


def test_a_padded_batch_gives_each_text_its_own_logits() -> None:
    """Zero padding is what the attention mask ignores: the real sentiment ONNX answers a padded batch of
    texts of different lengths as it answers each text alone."""
    ort = pytest.importorskip("onnxruntime")
    from tokenizers import Tokenizer

    folder = MODEL_REPOSITORY / MODELS["sentiment"].triton_model
    if not (folder / "1" / "model.onnx").exists():
        pytest.skip("sentiment model not built (make models)")
    session = ort.InferenceSession(str(folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    requests = []
    for text in ["Markets rally", "The council rejected the plan after a long and bitter debate on Tuesday"]:
        ids = np.array([tokenizer.encode(text).ids], np.int64)
        requests.append({"input_ids": ids, "attention_mask": np.ones_like(ids)})
    assert requests[0]["input_ids"].shape[1] < requests[1]["input_ids"].shape[1]
    feeds, sizes = concatenate(requests, ["input_ids", "attention_mask"])
    batched = split(session.run(["logits"], feeds), sizes)
    for request, (logits,) in zip(requests, batched):
        (alone,) = session.run(["logits"], request)
        np.testing.assert_allclose(logits, alone, atol=1e-4)
