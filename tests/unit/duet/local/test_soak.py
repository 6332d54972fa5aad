"""The soak verdict's memory growth: measured after the warm-up, on medians, so one spike decides nothing."""

from __future__ import annotations

import pytest

from duet.local.soak import growth


def test_growth_ignores_the_warm_up_and_a_single_spike() -> None:
    samples = [(t, 100 if t < 60 else 500) for t in range(0, 60, 5)]  # warm-up: 100 -> 500
    samples += [(t, 500) for t in range(60, 300, 5)]
    samples[30] = (samples[30][0], 5000)  # one spike mid-run
    assert growth(samples, warmup_s=60, window_s=30) == 0.0


def test_growth_sees_a_steady_leak() -> None:
    samples = [(t, 1000 + 2 * t) for t in range(0, 600, 5)]  # +2 bytes a second
    measured = growth(samples, warmup_s=60, window_s=30)
    assert measured == pytest.approx((1000 + 2 * 580) / (1000 + 2 * 75) - 1, rel=0.02)
    assert measured > 0.10


def test_growth_needs_samples_after_the_warm_up() -> None:
    with pytest.raises(ValueError, match="not enough samples"):
        growth([(0, 1), (5, 1)], warmup_s=60, window_s=30)
