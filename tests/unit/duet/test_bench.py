"""The bench's bookkeeping: failure kinds, ratios and the markdown section it rewrites."""

from __future__ import annotations

from pathlib import Path

from duet import bench


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
