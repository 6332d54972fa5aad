"""The load shapes say how many users run when, and stop the test themselves.

The schedules are tested here in the runner's process; the locust classes around them only in a subprocess,
since importing locust monkey-patches the standard library with gevent.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from duet.paths import ROOT
from loadtests.schedules import soak_users, spike_users, step_users


def test_step_rises_in_equal_steps_then_stops() -> None:
    users = [step_users(t, peak=40, steps=4, hold_seconds=10) for t in (0, 9.9, 10, 25, 39, 40)]
    assert users == [10, 10, 20, 30, 40, None]


def test_spike_jumps_to_the_peak_in_the_middle_only() -> None:
    users = [spike_users(t, peak=100, total_seconds=50) for t in (0, 19, 20, 29, 30, 49, 50)]
    assert users == [25, 25, 100, 100, 25, 25, None]


def test_soak_holds_its_users_for_its_duration() -> None:
    assert [soak_users(t, users=12, total_seconds=600) for t in (0, 599, 600)] == [12, 12, None]


@pytest.mark.slow
def test_locust_picks_the_shape_named_by_duet_shape() -> None:
    script = (
        "from locust.util.load_locustfile import load_locustfile\n"
        "users, shapes = load_locustfile('loadtests/locustfile.py')\n"
        "print(sorted(users), [type(shape).__name__ for shape in shapes])\n"
    )

    def run(shape: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "DUET_SHAPE": shape}, check=False)

    assert run("spike").stdout.strip() == "['MammographyUser', 'SentimentUser'] ['SpikeShape']"
    assert run("").stdout.strip() == "['MammographyUser', 'SentimentUser'] []"
    refused = run("ramp")
    assert refused.returncode != 0 and "DUET_SHAPE must be one of" in refused.stderr
