"""The phantom generator: determinism, exact boxes, resolution independence, label and degradation mix."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from models.detector.phantom import CLASS_NAMES, QUALITY_THRESHOLD, Phantom, make_phantom

SIZE = (320, 256)


def _box_slices(box: np.ndarray) -> tuple[slice, slice]:
    x0, y0, x1, y1 = box
    return slice(int(np.floor(y0)), int(np.ceil(y1))), slice(int(np.floor(x0)), int(np.ceil(x1)))


def test_class_names_are_the_contract() -> None:
    assert CLASS_NAMES == ("malignant_mass", "benign_mass", "calcification")


@pytest.mark.parametrize("seed", [0, 7, 123])
def test_same_seed_same_phantom_and_other_seed_differs(seed: int) -> None:
    a = make_phantom(seed, *SIZE)
    b = make_phantom(seed, *SIZE)
    c = make_phantom(seed + 1000, *SIZE)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.degraded == b.degraded
    assert not np.array_equal(a.image, c.image)


def test_generator_seed_advances() -> None:
    rng = np.random.default_rng(5)
    first, second = make_phantom(rng, *SIZE), make_phantom(rng, *SIZE)
    assert not np.array_equal(first.image, second.image)
    np.testing.assert_array_equal(first.image, make_phantom(np.random.default_rng(5), *SIZE).image)


def test_types_shapes_and_ranges() -> None:
    for seed in range(20):
        p = make_phantom(seed, *SIZE)
        assert isinstance(p, Phantom)
        assert p.image.dtype == np.float32 and p.image.shape == SIZE
        assert p.image.min() >= 0.0 and p.image.max() <= 1.0
        assert p.boxes.dtype == np.float32 and p.boxes.shape == (len(p.labels), 4)
        assert p.labels.dtype == np.int64
        assert p.breast_mask.dtype == bool and p.breast_mask.shape == SIZE
        assert p.malignant == bool((p.labels == 0).any())


def test_boxes_inside_image_and_well_formed() -> None:
    height, width = SIZE
    for seed in range(60):
        p = make_phantom(seed, height, width, n_lesions=3, degraded=False)
        assert len(p.boxes) == 3
        assert (p.boxes[:, 0] >= 0).all() and (p.boxes[:, 1] >= 0).all()
        assert (p.boxes[:, 2] <= width).all() and (p.boxes[:, 3] <= height).all()
        assert (p.boxes[:, 2] - p.boxes[:, 0] >= 3).all() and (p.boxes[:, 3] - p.boxes[:, 1] >= 3).all()


@pytest.mark.parametrize("size", [(320, 256), (832, 676)])
def test_boxes_contain_the_lesions_drawn(size: tuple[int, int]) -> None:
    """One seed with and without lesions differs only by the lesions: that excess lies inside the boxes."""
    for seed in range(25):
        plain = make_phantom(seed, *size, n_lesions=0, degraded=False)
        with_lesions = make_phantom(seed, *size, n_lesions=3, degraded=False)
        excess = with_lesions.image - plain.image
        inside = np.zeros(size, bool)
        for box in with_lesions.boxes:
            inside[_box_slices(box)] = True
            # Each box holds a lesion (subtle ones are about the texture's standard deviation, 0.07-0.11; a mild
            # low-contrast impairment squeezes them to a fifth)...
            floor = 0.06 if with_lesions.impairment == "none" else 0.015
            assert excess[_box_slices(box)].max() > floor, (seed, box, with_lesions.impairment)
        # ...and nothing visible was drawn outside the boxes (soft tails fade below 0.08; a mild blur spreads them).
        assert excess[~inside].max() < (0.08 if with_lesions.impairment == "none" else 0.1), seed
        # Every lesion sits inside the breast.
        for box in with_lesions.boxes:
            cx, cy = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
            assert with_lesions.breast_mask[cy, cx]


def test_first_lesions_are_shared_by_larger_counts() -> None:
    one = make_phantom(11, *SIZE, n_lesions=1, degraded=False)
    three = make_phantom(11, *SIZE, n_lesions=3, degraded=False)
    np.testing.assert_array_equal(one.boxes[0], three.boxes[0])
    assert one.labels[0] == three.labels[0]


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_same_seed_at_two_resolutions_scales(seed: int) -> None:
    small = make_phantom(seed, 400, 325, n_lesions=3, degraded=False)
    large = make_phantom(seed, 1600, 1300, n_lesions=3, degraded=False)
    np.testing.assert_array_equal(small.labels, large.labels)
    np.testing.assert_allclose(small.boxes * 4.0, large.boxes, atol=1e-2)
    # Same picture: the large image box-averaged down matches the small one closely (only fine noise differs).
    pooled = large.image.reshape(400, 4, 325, 4).mean(axis=(1, 3))
    if large.impairment == "noise":  # the grain is drawn per size (its strength is what scales)
        return
    assert np.abs(pooled - small.image).mean() < 0.02
    assert np.corrcoef(pooled.ravel(), small.image.ravel())[0, 1] > 0.98


def test_full_detector_size_is_supported() -> None:
    p = make_phantom(3, 4096, 3328, n_lesions=2, degraded=False)
    assert p.image.shape == (4096, 3328) and p.image.dtype == np.float32
    small = make_phantom(3, 512, 416, n_lesions=2, degraded=False)
    np.testing.assert_allclose(small.boxes * 8.0, p.boxes, atol=1e-2)


def test_breast_is_against_the_chest_wall_on_the_left() -> None:
    for seed in range(10):
        p = make_phantom(seed, *SIZE, degraded=False)
        left, right = p.breast_mask[:, : SIZE[1] // 8], p.breast_mask[:, -SIZE[1] // 8 :]
        assert left.mean() > 0.5 and right.mean() < 0.1
        assert p.image[p.breast_mask].mean() > 3 * max(p.image[~p.breast_mask].mean(), 0.01)


def test_degraded_share_and_label_mix() -> None:
    phantoms = [make_phantom(seed, 64, 52) for seed in range(600)]
    degraded = np.mean([p.degraded for p in phantoms])
    assert 0.24 < degraded < 0.34
    labels = np.concatenate([p.labels for p in phantoms])
    assert set(labels.tolist()) == {0, 1, 2}
    counts = np.bincount(labels, minlength=3) / len(labels)
    assert (counts > 0.2).all()
    per_image = [len(p.labels) for p in phantoms]
    assert min(per_image) == 0 and max(per_image) == 3
    assert 0.25 < np.mean([p.malignant for p in phantoms]) < 0.5


def test_forced_flags_are_honoured() -> None:
    for seed in range(30):
        assert make_phantom(seed, 64, 52, degraded=True).degraded
        assert not make_phantom(seed, 64, 52, degraded=False).degraded
        assert len(make_phantom(seed, 64, 52, n_lesions=2, degraded=True).labels) == 2


def test_degraded_images_lose_detail() -> None:
    """A degraded image has less tissue detail in the breast than the same seed acquired well, or no breast."""
    for seed in range(30):
        good = make_phantom(seed, *SIZE, n_lesions=0, degraded=False)
        bad = make_phantom(seed, *SIZE, n_lesions=0, degraded=True)
        if not bad.breast_mask.any():  # blank exposure
            assert bad.image.std() < 0.05
            continue
        # Fine detail: high-pass residual (image minus a 3-pixel Gaussian blur) deep inside the breast.
        core = ndimage.binary_erosion(good.breast_mask, iterations=25)
        detail_good = (good.image - ndimage.gaussian_filter(good.image, 3))[core].std()
        detail_bad = (bad.image - ndimage.gaussian_filter(bad.image, 3))[core].std()
        # Blur and low contrast flatten it; heavy noise swamps it. The diagnostic twin may be mildly impaired the
        # same way (same seed, same kind, lower severity), so the comparison is one-sided by kind.
        if bad.impairment == "noise":
            assert detail_bad > 1.2 * detail_good, (seed, detail_good, detail_bad)
        else:
            assert detail_bad < 0.8 * detail_good, (seed, bad.impairment, detail_good, detail_bad)


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="n_lesions"):
        make_phantom(0, *SIZE, n_lesions=4)
    with pytest.raises(ValueError, match="16x16"):
        make_phantom(0, 8, 8)



def test_quality_is_graded_around_the_threshold() -> None:
    """Diagnostic images include mildly impaired ones, and both classes have images close to the threshold."""
    phantoms = [make_phantom(seed, 64, 52) for seed in range(400)]
    for p in phantoms:
        if p.impairment == "none":
            assert p.severity == 0.0 and not p.degraded
        elif p.impairment != "blank":
            assert p.degraded == (p.severity >= QUALITY_THRESHOLD), (p.impairment, p.severity)
    diagnostic = [p for p in phantoms if not p.degraded]
    assert np.mean([p.impairment != "none" for p in diagnostic]) > 0.2
    severities = np.array([p.severity for p in phantoms if p.impairment not in ("none", "blank")])
    assert np.count_nonzero((severities >= 0.4) & (severities < QUALITY_THRESHOLD)) >= 10
    assert np.count_nonzero((severities >= QUALITY_THRESHOLD) & (severities < 0.6)) >= 10
    for kind in ("blur", "noise", "low_contrast"):
        assert kind in {p.impairment for p in phantoms}


def test_forced_quality_keeps_the_kind_and_orders_the_severity() -> None:
    for seed in range(30):
        good = make_phantom(seed, 64, 52, degraded=False)
        bad = make_phantom(seed, 64, 52, degraded=True)
        assert good.severity < QUALITY_THRESHOLD <= bad.severity or bad.impairment == "blank"
        if good.impairment != "none":
            assert good.impairment == bad.impairment
