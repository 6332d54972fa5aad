"""`duet bench` runs the naive server, the ceiling and duet in one run and writes its table and plot."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from duet.bench import SECTION
from duet.paths import ROOT

pytestmark = pytest.mark.integration


def test_bench_writes_the_side_by_side_section_and_plot(tmp_path: Path) -> None:
    document = tmp_path / "benchmarks.md"
    document.write_text("# Benchmarks\n\n## mammography\n\nkept\n")
    completed = subprocess.run(
        [sys.executable, "-m", "duet.cli", "bench", "--users", "2", "--texts", "1", "--seconds", "2",
         "--no-mammography", "--wrk-users", "2", "--markdown", str(document)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    text = document.read_text()
    assert SECTION in text and "kept" in text
    ratio_row = next(line for line in text.splitlines() if line.startswith("| 1 | 2 |"))
    duet_rps, naive_rps, versus_naive = (float(cell) for cell in ratio_row.split("|")[3:6])
    assert duet_rps > 0 and naive_rps > 0
    assert abs(versus_naive - duet_rps / naive_rps) < 0.02
    assert "transformer" in text and "naive server" in text  # CPU per request of both systems' processes
    assert (tmp_path / "bench-sentiment.png").stat().st_size > 10_000
    assert "locust CPU ms per request" in text
    if shutil.which("wrk"):  # the cross-check of the headline case with a C client
        wrk_row = next(line for line in text.splitlines() if line.startswith("| wrk (C) | 2 |"))
        cells = [cell.strip() for cell in wrk_row.split("|")]
        assert float(cells[3]) > 0 and float(cells[4]) > 0
        assert cells[8] == "0, 0", f"wrk's requests failed: {wrk_row}"  # both servers answered every one
