"""Load shapes for the locustfile, chosen with DUET_SHAPE (step, spike, soak); sizes from the environment.

A shape replaces locust's -u/-r/-t: it says how many users run at each second and stops the test itself
(the schedules are `schedules.py`).
- step: DUET_SHAPE_USERS users reached in DUET_SHAPE_STEPS equal steps, each held DUET_SHAPE_STEP_SECONDS; finds
  the knee of the latency curve.
- spike: a quarter of DUET_SHAPE_USERS, then all of them at once for a fifth of DUET_SHAPE_SECONDS, then a
  quarter again; shows what overload does (429 with Retry-After, not timeouts) and that the service recovers.
- soak: DUET_SHAPE_USERS users held for DUET_SHAPE_SECONDS (default 10 minutes); shows leaks and drift.
Import this module only inside locust (it imports locust, which monkey-patches with gevent).
"""

from __future__ import annotations

import os

from locust import LoadTestShape

from loadtests.schedules import soak_users, spike_users, step_users

SHAPE_NAMES = ("step", "spike", "soak")


def _setting(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def _tick(users: int | None, spawn_rate: float) -> tuple[int, float] | None:
    return None if users is None else (users, spawn_rate)


class StepShape(LoadTestShape):
    """Users rise in equal steps to the peak, each step held for the same time."""

    def tick(self) -> tuple[int, float] | None:
        users = step_users(self.get_run_time(), int(_setting("DUET_SHAPE_USERS", 64)),
                           max(1, int(_setting("DUET_SHAPE_STEPS", 4))), _setting("DUET_SHAPE_STEP_SECONDS", 30))
        return _tick(users, float(users or 1))


class SpikeShape(LoadTestShape):
    """A quarter of the peak, the whole peak at once, then back to a quarter."""

    def tick(self) -> tuple[int, float] | None:
        peak = int(_setting("DUET_SHAPE_USERS", 128))
        return _tick(spike_users(self.get_run_time(), peak, _setting("DUET_SHAPE_SECONDS", 60)), float(peak))


class SoakShape(LoadTestShape):
    """A steady load for a long time."""

    def tick(self) -> tuple[int, float] | None:
        users = int(_setting("DUET_SHAPE_USERS", 16))
        return _tick(soak_users(self.get_run_time(), users, _setting("DUET_SHAPE_SECONDS", 600)), float(users))


SHAPES: dict[str, type[LoadTestShape]] = {"step": StepShape, "spike": SpikeShape, "soak": SoakShape}


def selected_shape(name: str) -> type[LoadTestShape] | None:
    """The shape class for DUET_SHAPE's value; None (locust's own -u/-r/-t) when empty."""
    if not name:
        return None
    if name not in SHAPES:
        raise ValueError(f"DUET_SHAPE must be one of {sorted(SHAPES)}, got {name!r}")
    return SHAPES[name]
