"""`duet bench` runs the naive server, the ceiling and duet in one run and writes its table and plot."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from duet.bench import SECTION
from duet.bench_studies import SECTION as STUDY_SECTION
from duet.bench_studies import SIZING_SECTION
from duet.paths import ROOT

pytestmark = pytest.mark.integration


def test_bench_writes_the_side_by_side_section_and_plot(tmp_path: Path) -> None:
    document = tmp_path / "benchmarks.md"
    document.write_text("# Benchmarks\n\n## mammography\n\nkept\n")
    completed = subprocess.run(
        [sys.executable, "-m", "duet.cli", "bench", "--users", "2", "--texts", "1", "--seconds", "2",
         "--no-mammography", "--wrk-users", "2", "--no-studies", "--markdown", str(document)],
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


def _table(text: str, section: str) -> list[list[str]]:
    """The rows of the first markdown table under `section`, as stripped cells (header and rule dropped)."""
    lines = text.split(section, 1)[1].split("\n## ", 1)[0].splitlines()
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines if line.startswith("|")]
    return rows[2:]


def test_bench_steps_mammography_load_and_writes_sizing_next_to_sentiment(tmp_path: Path) -> None:
    """A real stack, real locust processes: one row per (size, syntax, concurrency), every study answered, and
    the per-core figures consistent with the CPU each study cost."""
    document = tmp_path / "benchmarks.md"
    document.write_text("# Benchmarks\n\n## kept\n\nkept\n")
    completed = subprocess.run(
        [sys.executable, "-m", "duet.cli", "bench", "--users", "2", "--texts", "1", "--seconds", "2",
         "--wrk-users", "0", "--no-mammography", "--study-users", "1,2", "--study-sizes", "128x104",
         "--study-syntaxes", "explicit,j2k", "--study-seconds", "2", "--markdown", str(document)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=900,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    assert "concurrent studies" in completed.stdout  # progress named each step
    text = document.read_text()
    assert "kept" in text and SECTION in text
    steps = _table(text, STUDY_SECTION)
    assert [(row[0], row[1], row[2]) for row in steps] == [
        ("128x104", "explicit", "1"), ("128x104", "explicit", "2"),
        ("128x104", "j2k", "1"), ("128x104", "j2k", "2"),
    ]
    for row in steps:
        studies, per_second, errors = int(row[3]), float(row[4]), row[8]
        cpu_ms, per_core = float(row[9]), float(row[11])
        assert studies > 0 and per_second > 0 and errors == "0", row
        assert abs(per_core - 1000 / cpu_ms) / per_core < 0.05, row  # cells rounded to whole ms
    sizing = {(row[0], row[1]): row for row in _table(text, SIZING_SECTION)}
    assert set(sizing) == {("mammography", "4-view study, 128x104, explicit"),
                           ("mammography", "4-view study, 128x104, j2k"), ("sentiment", "1 headline")}
    for row in sizing.values():
        assert float(row[2]) > 0 and float(row[3]) > 0, row
