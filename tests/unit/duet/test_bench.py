"""The bench's bookkeeping: failure kinds, ratios and the markdown section it rewrites."""

from __future__ import annotations

from pathlib import Path

from duet import bench, wrk


def step(system: str, users: int, rps: float, p99: float, texts: int = 1) -> bench.StepResult:
    return bench.StepResult(system=system, texts=texts, users=users, requests=int(rps * 10), rps=rps, p50_ms=p99 / 2,
                            p95_ms=p99 * 0.9, p99_ms=p99, errors={"429": 0, "503": 0, "other": 0},
                            cpu_ms={"transformer": 1.5})


def test_failures_are_classified_by_their_status() -> None:
    assert bench.classify_failure("CatchResponseError('429 overloaded')") == "429"
    assert bench.classify_failure("CatchResponseError('503 predictor unavailable')") == "503"
    assert bench.classify_failure("ConnectionRefusedError(111, 'Connection refused')") == "other"


def test_ratios_pair_each_step_of_duet_with_the_naive_server_and_the_ceiling() -> None:
    results = [step("naive", 32, 100.0, 600.0), step("duet", 32, 150.0, 300.0), step("duet", 1, 60.0, 20.0)]
    rows = bench.ratio_rows(results, {1: {"texts_per_s": 250.0, "median_ms": 4.0}})
    by_users = {row["users"]: row for row in rows}
    assert by_users[32]["vs_naive"] == 1.5
    assert by_users[32]["vs_ceiling"] == 150.0 / 250.0
    assert by_users[1]["vs_naive"] is None  # no naive step to compare with


def test_the_section_is_replaced_in_place_and_other_sections_stay(tmp_path: Path) -> None:
    document = tmp_path / "benchmarks.md"
    document.write_text(f"# Benchmarks\n\nintro\n\n{bench.SECTION}\n\nold numbers\n\n## mammography\n\nkept\n")
    section = bench.markdown_section([step("naive", 8, 90.0, 200.0), step("duet", 8, 120.0, 150.0)],
                                     {1: {"texts_per_s": 250.0, "median_ms": 4.0}}, "notes here", None)
    bench.replace_section(document, bench.SECTION, section)
    text = document.read_text()
    assert "old numbers" not in text
    assert "| 1 | 8 | 120.0 | 90.0 | 1.33 |" in text
    assert text.index(bench.SECTION) < text.index("## mammography") and "kept" in text
    bench.replace_section(document, bench.SECTION, section)
    assert document.read_text().count(bench.SECTION) == 1


def test_the_headline_case_is_shown_by_client_with_each_client_s_cpu() -> None:
    results = [bench.StepResult(system=system, texts=1, users=32, requests=100, rps=rps, p50_ms=10, p95_ms=20,
                                p99_ms=p99, errors={}, cpu_ms={}, client_cpu_ms=cpu)
               for system, rps, p99, cpu in (("naive", 100.0, 230.0, 2.5), ("duet", 119.0, 196.0, 2.0))]
    wrk_runs = {"naive": wrk.WrkRun(requests=900, rps=300.0, p50_ms=50, p99_ms=196, failed=0, client_cpu_ms=0.2),
                "duet": wrk.WrkRun(requests=700, rps=237.0, p50_ms=60, p99_ms=230, failed=0, client_cpu_ms=0.25)}
    rows = bench.client_rows(results, wrk_runs, 32)
    assert [row[0] for row in rows] == ["locust (Python)", "wrk (C)"]
    assert rows[0][4] == "1.19" and rows[1][4] == "0.79"
    assert rows[0][7] == "0, 0" and rows[1][7] == "0, 0"
    assert rows[0][8] == "2.00, 2.50" and rows[1][8] == "0.25, 0.20"
    section = bench.markdown_section(results, {}, "notes", None, wrk_runs, 32)
    assert "| wrk (C) | 32 | 237.0 | 300.0 | 0.79 |" in section
