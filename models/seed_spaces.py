"""Seed spaces for phantoms: training, held-out evaluation and tests/demos never share a random stream.

numpy seeds a generator through `SeedSequence`, which turns its entropy into a list of uint32 words, pads that list
with zeros to its pool size (4 words) and mixes it into the pool. Every step of that mixing is invertible, so two
entropies of at most 4 words give the same stream exactly when their zero-padded words are equal. That is why
`default_rng([seed, 0])` equals `default_rng(seed)`: the trailing zero is padding.

The spaces:

- Training and the detector's build-time held-out set (`models.detector.data.make_framed`): phantom i of a set
  seeded s gets the plain int seed `s * DETECTOR_BLOCK + i` (one block of ints per set seed, so the training set,
  seed 0, and the build's held-out set, seed 7919, are disjoint blocks). An int below 2**64 is at most two words,
  so words 2 and 3 of its padded entropy are zero. This space is left as it is: changing it retrains the detector.
- Every other phantom (`duet dicom synth`, unit and integration tests, demos, load tests, and held-out sets that
  are evaluated outside the build) is seeded by `phantom_seed(namespace, seed, index)`: exactly four words
  `(seed, index, namespace, SPACE_TAG)`. Word 3 is never zero, so it meets no int seed; word 2 tells the
  namespaces apart, words 0 and 1 the phantoms inside one.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

# The detector build's phantom i of the set seeded s uses the int seed s * DETECTOR_BLOCK + i (`make_framed`).
DETECTOR_BLOCK = 1_000_003
# Word 3 of every namespaced entropy: non-zero, so no int seed (whose word 3 is padding, zero) can equal it.
SPACE_TAG = 0x64756574  # "duet"
_WORD = 2**32


class Namespace(IntEnum):
    """Word 2 of a namespaced phantom's entropy."""

    HELD_OUT = 1  # held-out evaluation outside the build (e.g. through the served pipeline)
    TEST = 2  # `duet dicom synth`, unit and integration tests, demos and load tests
    CALIBRATION = 3  # studies the study risk's calibration is fitted on (never evaluated on)


def phantom_seed(namespace: Namespace, seed: int, index: int = 0) -> np.random.SeedSequence:
    """The seed of phantom `index` of synthetic set `seed` in `namespace` (both integers in [0, 2**32))."""
    for name, value in (("seed", seed), ("index", index)):
        if not 0 <= int(value) < _WORD:
            raise ValueError(f"phantom {name} must be in [0, 2**32), got {value}")
    words = np.array([seed, index, Namespace(namespace).value, SPACE_TAG], dtype=np.uint32)
    return np.random.SeedSequence(words)


def int_seed_words(seed: int) -> np.ndarray:
    """The padded entropy words of the plain int seed `seed` in [0, 2**64): (low word, high word, 0, 0)."""
    if not 0 <= seed < _WORD * _WORD:
        raise ValueError(f"int seed must be in [0, 2**64), got {seed}")
    return np.array([seed % _WORD, seed // _WORD, 0, 0], dtype=np.uint32)


def detector_build_seeds(set_seed: int, count: int) -> range:
    """The int seeds of the detector build's phantoms for one set (`make_framed(set_seed, count, ...)`)."""
    if not 0 <= count <= DETECTOR_BLOCK:
        raise ValueError(f"a set holds at most {DETECTOR_BLOCK} phantoms, got {count}")
    return range(set_seed * DETECTOR_BLOCK, set_seed * DETECTOR_BLOCK + count)
