"""The locust load test runs against the real stack, and its pass/fail thresholds really fail a run."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from duet.paths import ROOT

pytestmark = pytest.mark.integration


def _locust(stack, tmp_path: Path, user_class: str, env: dict[str, str]) -> tuple[int, dict]:
    prefix = tmp_path / user_class
    completed = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"), "--headless",
         "--host", stack.transformer_http, "-u", "2", "-r", "2", "-t", "4s", "--csv", str(prefix), "--only-summary",
         user_class],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True, timeout=240,
    )
    rows = {row["Name"]: row for row in csv.DictReader(Path(f"{prefix}_stats.csv").open())}
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
