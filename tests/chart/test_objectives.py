"""duet's service objectives come from one file (charts/duet/files/objectives.yaml): the alerts, the chart,
the locust thresholds and the docs all say the same numbers; a drift fails here or in the chart's render."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from chart_support import CHART, OPERATIONS_DOC, REPO, RULES_FILE, HelmError, run_helm

from loadtests.objectives import OBJECTIVES_FILE, load_objectives
from transformers_pre.metrics import LATENCY_BUCKETS_SECONDS

OBJECTIVES = load_objectives()
LOADTESTING_DOC = REPO / "docs" / "loadtesting.md"


def _alert(name: str) -> dict:
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return next(rule for group in groups for rule in group["rules"] if rule.get("alert") == name)


def _number(value: float) -> str:
    return f"{value:g}"


def test_the_objectives_file_is_the_one_the_loader_reads() -> None:
    assert OBJECTIVES_FILE == CHART / "files" / "objectives.yaml"
    assert set(OBJECTIVES.latency_p99_seconds) == {"sentiment", "mammography"}
    assert 0 < OBJECTIVES.error_ratio < 0.1


def test_every_latency_objective_is_a_histogram_bucket_bound() -> None:
    """A p99 objective between two bucket bounds would be judged on an interpolation, not on counts."""
    for model, seconds in OBJECTIVES.latency_p99_seconds.items():
        assert seconds in LATENCY_BUCKETS_SECONDS, f"{model}: {seconds} s is not a bucket bound"


def test_the_latency_alert_pages_on_the_objectives() -> None:
    alert = _alert("DuetLatencyP99OverObjective")
    bounds = dict(re.findall(r'p99_5m\{model="(\w+)"\}\s*>\s*([0-9.]+)', alert["expr"]))
    assert {model: float(value) for model, value in bounds.items()} == OBJECTIVES.latency_p99_seconds
    described = alert["annotations"]["description"]
    for model, seconds in OBJECTIVES.latency_p99_seconds.items():
        assert f"{model} {_number(seconds)} s" in described, described


def test_the_error_alert_pages_on_the_error_objective() -> None:
    alert = _alert("DuetHighErrorRatio")
    assert float(alert["expr"].rsplit(">", 1)[1]) == OBJECTIVES.error_ratio
    assert f"{_number(100 * OBJECTIVES.error_ratio)}%" in alert["annotations"]["description"]


def test_locust_thresholds_default_to_the_objectives() -> None:
    """The locustfile as locust loads it (its own process: gevent patches the interpreter), no overrides."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("DUET_MAX_")}
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json; from loadtests import locustfile; print(json.dumps(locustfile.THRESHOLDS))",
        ],
        cwd=REPO,
        env={**environment, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    thresholds = json.loads(completed.stdout.strip().splitlines()[-1])
    assert thresholds == {
        "failure_ratio": OBJECTIVES.error_ratio,
        **{model: 1000 * seconds for model, seconds in OBJECTIVES.latency_p99_seconds.items()},
    }


def test_the_docs_state_the_objectives() -> None:
    operations = OPERATIONS_DOC.read_text()
    loadtesting = LOADTESTING_DOC.read_text()
    for model, seconds in OBJECTIVES.latency_p99_seconds.items():
        assert re.search(rf"\| `{model}` \|.*\| {_number(seconds)} s", operations), (
            f"{model} row of operations.md"
        )
        row = next(
            line
            for line in loadtesting.splitlines()
            if line.startswith(f"| `DUET_MAX_P99_MS_{model.upper()}`")
        )
        assert f"| {_number(1000 * seconds)} |" in row, row
    row = next(line for line in loadtesting.splitlines() if line.startswith("| `DUET_MAX_FAILURE_RATIO`"))
    assert f"| {_number(OBJECTIVES.error_ratio)} |" in row, row


@pytest.mark.parametrize(
    "alert, original, drifted",
    [
        ("DuetLatencyP99OverObjective", 'model="mammography"} > 6\n', 'model="mammography"} > 10\n'),
        ("DuetHighErrorRatio", "ratio_rate5m > 0.01\n", "ratio_rate5m > 0.05\n"),
    ],
)
def test_the_chart_refuses_to_render_rules_that_drifted(
    helm: Path, tmp_path: Path, alert: str, original: str, drifted: str
) -> None:
    chart = tmp_path / "duet"
    shutil.copytree(CHART, chart)
    rules = chart / "files" / "prometheus-rules.yaml"
    assert original in rules.read_text()
    rules.write_text(rules.read_text().replace(original, drifted))
    with pytest.raises(HelmError, match=f"{alert}.*objectives.yaml"):
        run_helm(["template", "duet", str(chart)])
    run_helm(["template", "duet", str(CHART)])  # the real chart renders
