"""Load shapes for the locustfile, chosen with DUET_SHAPE (step, spike, soak); sizes from the environment.

A shape replaces locust's -u/-r/-t: it says how many users run at each second and stops the test itself.
- step: DUET_SHAPE_USERS users reached in DUET_SHAPE_STEPS equal steps, each held DUET_SHAPE_STEP_SECONDS; finds
  the knee of the latency curve.
- spike: a quarter of DUET_SHAPE_USERS, then all of them at once for a fifth of DUET_SHAPE_SECONDS, then a
  quarter again; shows what overload does (429 with Retry-After, not timeouts) and that the service recovers.
- soak: DUET_SHAPE_USERS users held for DUET_SHAPE_SECONDS (default 10 minutes); shows leaks and drift.
"""

from __future__ import annotations

import os

from locust import LoadTestShape


def _setting(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


class StepShape(LoadTestShape):
    """Users rise in equal steps to the peak, each step held for the same time."""

    def tick(self) -> tuple[int, float] | None:
        peak = int(_setting("DUET_SHAPE_USERS", 64))
        steps = max(1, int(_setting("DUET_SHAPE_STEPS", 4)))
        hold = _setting("DUET_SHAPE_STEP_SECONDS", 30)
        step = int(self.get_run_time() // hold)
        if step >= steps:
            return None
        users = max(1, round(peak * (step + 1) / steps))
        return users, float(users)


class SpikeShape(LoadTestShape):
    """A quarter of the peak, the whole peak at once, then back to a quarter."""

    def tick(self) -> tuple[int, float] | None:
        peak = int(_setting("DUET_SHAPE_USERS", 128))
        total = _setting("DUET_SHAPE_SECONDS", 60)
        elapsed = self.get_run_time()
        if elapsed >= total:
            return None
        base = max(1, peak // 4)
        spiking = 0.4 * total <= elapsed < 0.6 * total
        return (peak, float(peak)) if spiking else (base, float(peak))


class SoakShape(LoadTestShape):
    """A steady load for a long time."""

    def tick(self) -> tuple[int, float] | None:
        users = int(_setting("DUET_SHAPE_USERS", 16))
        if self.get_run_time() >= _setting("DUET_SHAPE_SECONDS", 600):
            return None
        return users, float(users)


SHAPES: dict[str, type[LoadTestShape]] = {"step": StepShape, "spike": SpikeShape, "soak": SoakShape}


def selected_shape(name: str) -> type[LoadTestShape] | None:
    """The shape class for DUET_SHAPE's value; None (locust's own -u/-r/-t) when empty."""
    if not name:
        return None
    if name not in SHAPES:
        raise ValueError(f"DUET_SHAPE must be one of {sorted(SHAPES)}, got {name!r}")
    return SHAPES[name]
