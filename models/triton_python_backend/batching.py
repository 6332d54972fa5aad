"""Request batching around one ONNX Runtime call, shared by both local predictors.

Triton's dynamic batcher (the Python-backend wrapper, `model.py`) and the ONNX Runtime fallback's own asyncio
batcher (`duet.local.ort_predictor`) gather requests differently, but both then do the same: concatenate the
gathered requests' inputs along the batch axis into one ONNX Runtime call and split the outputs back, row
ranges in request order. Only this module pads.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np


def pad_to(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Zero-pad every non-batch axis of `array` up to `shape` (batch axis untouched).

    Zero is the padding every duet model takes: token id 0 with attention mask 0, which the attention ignores.
    Image inputs have fixed non-batch axes, so they are never padded.
    """
    widths = [(0, 0)] + [(0, target - size) for size, target in zip(array.shape[1:], shape[1:])]
    return np.pad(array, widths) if any(after for _, after in widths) else array


def concatenate(requests: Sequence[Mapping[str, np.ndarray]],
                names: Sequence[str]) -> tuple[dict[str, np.ndarray], list[int]]:
    """One batch from several requests' inputs: for each input name, the requests' arrays padded to the longest
    along every non-batch axis and concatenated along axis 0. Returns (feeds, rows per request)."""
    sizes = [int(request[names[0]].shape[0]) for request in requests]
    feeds = {}
    for name in names:
        arrays = [request[name] for request in requests]
        longest = tuple(np.max([array.shape for array in arrays], axis=0))
        feeds[name] = np.concatenate([pad_to(array, longest) for array in arrays])
    return feeds, sizes


def split(results: Sequence[np.ndarray], sizes: Sequence[int]) -> list[list[np.ndarray]]:
    """The batch's outputs back per request: for each request, its rows of every output (contiguous copies)."""
    bounds = np.cumsum([0, *sizes])
    return [[np.ascontiguousarray(result[start:stop]) for result in results]
            for start, stop in itertools.pairwise(bounds)]
