"""Training, held-out and test phantoms come from disjoint seed spaces, by construction and by exhaustive check."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytest

from duet.synthetic_dicom import synth_image
from models.detector.data import make_framed
from models.detector.phantom import make_phantom
from models.seed_spaces import (
    SPACE_TAG,
    Namespace,
    detector_build_seeds,
    int_seed_words,
    phantom_seed,
)

# Synthetic set seeds checked against the detector build's (read from its recipe below): every seed the unit and
# integration tests, benchmarks and load tests pass to `duet.synthetic_dicom`, and more.
TEST_SEEDS = [*range(1200), *range(900_000, 900_064)]
VIEW_INDICES = range(8)


def _pool(sequence: np.random.SeedSequence) -> tuple[int, ...]:
    """The mixed pool: everything a generator seeded by `sequence` depends on (no spawn keys here)."""
    return tuple(int(word) for word in sequence.pool)


def _detector_build_seeds() -> set[int]:
    from models.detector.build import recipe

    seeds: set[int] = set()
    for quick in (False, True):
        r = recipe(quick=quick)
        seeds |= set(detector_build_seeds(r["seed"], r["train_images"]))
        seeds |= set(detector_build_seeds(r["verify_seed"], r["verify_images"]))
        seeds.add(r["verify_seed"] + 1)  # the warmup image
    return seeds


def _namespaced(namespace: Namespace) -> Iterable[np.random.SeedSequence]:
    return (phantom_seed(namespace, seed, index) for seed in TEST_SEEDS for index in VIEW_INDICES)


def _shared_streams(first: Iterable[np.random.SeedSequence], second: Iterable[np.random.SeedSequence]) -> int:
    return len({_pool(s) for s in first} & {_pool(s) for s in second})


@pytest.mark.parametrize("seed", [0, 5, 101, 2**32 - 1, 2**32, 7919 * 1_000_003 + 5, 2**64 - 1])
def test_an_int_seed_is_its_two_words_padded_with_zeros(seed: int) -> None:
    # What the construction relies on: numpy mixes an int seed below 2**64 as (low, high, 0, 0).
    expected = np.random.SeedSequence(int_seed_words(seed)).pool
    np.testing.assert_array_equal(np.random.SeedSequence(seed).pool, expected)
    assert int_seed_words(seed)[2] == int_seed_words(seed)[3] == 0


def test_namespaced_entropy_is_four_words_ending_in_the_tag() -> None:
    for namespace in Namespace:
        for seed, index in [(0, 0), (101, 0), (2**32 - 1, 2**32 - 1)]:
            words = phantom_seed(namespace, seed, index).entropy
            assert words.dtype == np.uint32 and words.tolist() == [seed, index, namespace.value, SPACE_TAG]
    assert SPACE_TAG != 0 and len({n.value for n in Namespace}) == len(Namespace)


def test_the_check_finds_the_old_collision_of_view_zero_with_training() -> None:
    # The scheme this replaced, default_rng([seed, index]): view 0 of integration study 101 was training phantom 101.
    training = [np.random.SeedSequence(k) for k in sorted(_detector_build_seeds())]
    legacy = [np.random.SeedSequence([seed, index]) for seed in (101, 102, 103) for index in range(4)]
    assert _shared_streams(legacy, training) == 3


def test_training_held_out_and_test_phantoms_share_no_stream() -> None:
    training = [np.random.SeedSequence(k) for k in sorted(_detector_build_seeds())]
    assert len({_pool(s) for s in training}) == len(training)
    test = list(_namespaced(Namespace.TEST))
    held_out = list(_namespaced(Namespace.HELD_OUT))
    calibration = list(_namespaced(Namespace.CALIBRATION))
    assert len({_pool(s) for s in test}) == len(test) == len(TEST_SEEDS) * len(VIEW_INDICES)
    assert _shared_streams(test, training) == 0
    assert _shared_streams(held_out, training) == 0
    assert _shared_streams(test, held_out) == 0
    assert _shared_streams(calibration, training) == 0
    assert _shared_streams(calibration, held_out) == 0
    assert _shared_streams(calibration, test) == 0


def test_detector_training_and_build_held_out_blocks_are_disjoint() -> None:
    from models.detector.build import recipe

    r = recipe()
    train = set(detector_build_seeds(r["seed"], r["train_images"]))
    verify = set(detector_build_seeds(r["verify_seed"], r["verify_images"]))
    assert not train & verify and r["verify_seed"] + 1 not in train
    with pytest.raises(ValueError, match="at most"):
        detector_build_seeds(0, 1_000_004)


def test_detector_build_seeds_are_the_ones_make_framed_draws() -> None:
    framed = make_framed(3, 3, 64, 52)
    for position, seed in enumerate(detector_build_seeds(3, 3)):
        phantom = make_phantom(seed, 80, 65)
        np.testing.assert_array_equal(framed.labels[position], phantom.labels)
        assert framed.quality[position] == (not phantom.degraded)


@pytest.mark.parametrize("seed", [101, 102, 103])
def test_synth_view_zero_is_the_test_namespace_phantom_not_a_training_one(seed: int) -> None:
    image = synth_image(seed, index=0, rows=64, columns=52, bits=12)
    stored = image.dataset.pixel_array.astype(np.int64)
    ours = make_phantom(np.random.default_rng(phantom_seed(Namespace.TEST, seed, 0)), 64, 52)
    training = make_phantom(seed, 64, 52)
    np.testing.assert_array_equal(stored, np.rint(np.clip(ours.image, 0, 1) * 4095).astype(np.int64))
    assert not np.array_equal(stored, np.rint(np.clip(training.image, 0, 1) * 4095).astype(np.int64))


def test_synth_held_out_namespace_draws_other_phantoms() -> None:
    test = synth_image(7, rows=64, columns=52).dataset.pixel_array
    held_out = synth_image(7, rows=64, columns=52, namespace=Namespace.HELD_OUT).dataset.pixel_array
    assert not np.array_equal(test, held_out)


@pytest.mark.parametrize(("seed", "index"), [(-1, 0), (2**32, 0), (0, -1), (0, 2**32)])
def test_phantom_seed_rejects_values_outside_one_word(seed: int, index: int) -> None:
    with pytest.raises(ValueError, match="2\\*\\*32"):
        phantom_seed(Namespace.TEST, seed, index)
