"""How many users a load shape runs at each moment: pure functions of the elapsed seconds (None = stop).

Kept apart from `shapes.py` (which subclasses locust's LoadTestShape) so they can be tested without importing
locust: locust monkey-patches the standard library with gevent on import, which must never happen inside another
process (the test runner, a server).
"""

from __future__ import annotations


def step_users(elapsed: float, peak: int, steps: int, hold_seconds: float) -> int | None:
    """`peak` users reached in `steps` equal steps, each held `hold_seconds`; then stop."""
    step = int(elapsed // hold_seconds)
    if step >= steps:
        return None
    return max(1, round(peak * (step + 1) / steps))


def spike_users(elapsed: float, peak: int, total_seconds: float) -> int | None:
    """A quarter of `peak`, all of it from 40% to 60% of `total_seconds`, then a quarter again; then stop."""
    if elapsed >= total_seconds:
        return None
    spiking = 0.4 * total_seconds <= elapsed < 0.6 * total_seconds
    return peak if spiking else max(1, peak // 4)


def soak_users(elapsed: float, users: int, total_seconds: float) -> int | None:
    """`users` held for `total_seconds`; then stop."""
    return None if elapsed >= total_seconds else users
