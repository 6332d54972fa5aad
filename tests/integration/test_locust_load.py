"""The locust load test runs against the real stack, and its pass/fail thresholds really fail a run."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from duet.paths import ROOT

from .conftest import start_stack

pytestmark = pytest.mark.integration


def _locust(stack, tmp_path: Path, user_class: str, env: dict[str, str]) -> tuple[int, dict]:
    prefix = tmp_path / user_class
    completed = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"), "--headless",
         "--host", stack.transformer_http, "-u", "2", "-r", "2", "-t", "4s", "--csv", str(prefix), "--only-summary",
         user_class],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True, timeout=240,
        check=False,  # the exit code is the result under test
    )
    with Path(f"{prefix}_stats.csv").open() as stats_file:
        rows = {row["Name"]: row for row in csv.DictReader(stats_file)}
    return completed.returncode, rows


def test_sentiment_load_passes_its_thresholds(local_stack, tmp_path: Path) -> None:
    code, rows = _locust(local_stack, tmp_path, "SentimentUser", {})
    assert int(rows["sentiment"]["Request Count"]) > 0
    assert int(rows["sentiment"]["Failure Count"]) == 0
    assert code == 0


def test_a_breached_latency_threshold_fails_the_run(local_stack, tmp_path: Path) -> None:
    code, rows = _locust(local_stack, tmp_path, "SentimentUser", {"DUET_MAX_P99_MS_SENTIMENT": "0.001"})
    assert int(rows["sentiment"]["Request Count"]) > 0
    assert code == 1


def test_overload_is_its_own_failure_kind(tmp_path: Path) -> None:
    """A transformer admitting one request at a time, 16 closed-loop users: the refusals are counted as
    "429 overloaded", apart from any other failure, and every other request is a checked success."""
    stack = start_stack(tmp_path / "stack", "triton", ("sentiment",), {"DUET_MAX_INFLIGHT_REQUESTS": "1"})
    try:
        prefix = tmp_path / "overload"
        subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"), "--headless",
             "--host", stack.transformer_http, "-u", "16", "-r", "16", "-t", "4s", "--csv", str(prefix),
             "--only-summary", "SentimentUser"],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "DUET_THINK_SECONDS": "0"}, capture_output=True,
            text=True, timeout=240, check=False,  # the run fails on its thresholds; its CSV files are what count
        )
    finally:
        stack.stop()
    with Path(f"{prefix}_failures.csv").open() as failures_file:
        failures = {row["Error"]: int(row["Occurrences"]) for row in csv.DictReader(failures_file)}
    with Path(f"{prefix}_stats.csv").open() as stats_file:
        stats = {row["Name"]: row for row in csv.DictReader(stats_file)}
    overloaded = sum(count for error, count in failures.items() if "429 overloaded" in error)
    assert overloaded > 0
    assert overloaded == int(stats["sentiment"]["Failure Count"])  # nothing else failed
    assert int(stats["sentiment"]["Request Count"]) > overloaded  # the admitted ones succeeded
