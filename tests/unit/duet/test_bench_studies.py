"""The sizing figures of `duet bench`: medians over the error-free steps of one request kind, per core."""

from __future__ import annotations

from duet.bench import StepResult
from duet.bench_studies import StudyStep, sizing_rows

NO_ERRORS = {"429": 0, "503": 0, "other": 0}


def _study(users: int, per_second: float, cpu_ms: float, errors: int = 0) -> StudyStep:
    return StudyStep(
        size="1024x832",
        syntax="j2k",
        users=users,
        studies=100,
        studies_per_s=per_second,
        p50_ms=100,
        p95_ms=200,
        p99_ms=300 + users,
        errors={**NO_ERRORS, "429": errors},
        transformer_cpu_ms=cpu_ms,
        predictor_cpu_ms=20.0,
    )


def _sentiment(users: int, rps: float, transformer_ms: float, system: str = "duet") -> StepResult:
    return StepResult(
        system=system,
        texts=1,
        users=users,
        requests=500,
        rps=rps,
        p50_ms=5,
        p95_ms=9,
        p99_ms=12,
        errors=dict(NO_ERRORS),
        cpu_ms={"transformer": transformer_ms, "tritonserver": 1.0, "python stub": 3.0},
    )


def test_per_core_figures_are_medians_of_the_error_free_steps() -> None:
    steps = [_study(1, 5.0, 150), _study(2, 6.0, 200), _study(4, 6.5, 250), _study(8, 9.0, 50, errors=3)]
    sentiment = [
        _sentiment(1, 80, 2.5),
        _sentiment(8, 150, 2.0),
        _sentiment(32, 190, 1.5),
        _sentiment(32, 300, 9.0, system="naive"),
    ]
    mammography, text = sizing_rows(steps, sentiment)
    # The 8-study step had 429s: neither its CPU nor its rate counts.
    assert mammography == [
        "mammography",
        "4-view study, 1024x832, j2k",
        "200",
        "5.00",
        "20",
        "6.50 (4)",
        "304",
    ]
    # Only duet's steps: the naive server's are no sizing figure.
    assert text == ["sentiment", "1 headline", "2.00", "500", "4.00", "190.0 (32)", "12"]


def test_studies_per_transformer_core_follow_the_cpu_per_study() -> None:
    step = _study(2, 4.0, 250)
    assert step.studies_per_transformer_core == 4.0
    assert step.transformer_cores_busy == 1.0
