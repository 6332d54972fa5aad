"""The Prometheus rules (charts/duet/files/prometheus-rules.yaml): promtool checks them and runs their unit
tests (prometheus-rules.test.yaml); the unit tests are shown to catch a changed threshold; every alert links a
runbook section that exists; every series the rules read is one the transformer, the gateway or Triton exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from chart_support import (
    CHART,
    GATEWAY_SERIES,
    OPERATIONS_DOC,
    OTHER_SERIES,
    RULES_FILE,
    TRANSFORMER_SERIES,
    TRITON_SERIES,
    markdown_anchors,
    rule_names,
    series_used,
)

RULES_TEST = CHART / "files" / "prometheus-rules.test.yaml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian package `prometheus`: apt-get install -y prometheus; .ci/run installs it)")

def all_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES_FILE.read_text())["groups"] for rule in group["rules"]]


@needs_promtool
def test_promtool_checks_the_rules_file():
    proc = subprocess.run([PROMTOOL, "check", "rules", str(RULES_FILE)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@needs_promtool
def test_promtool_unit_tests_pass():
    proc = subprocess.run([PROMTOOL, "test", "rules", str(RULES_TEST)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@needs_promtool
@pytest.mark.parametrize(("original", "mutated"), [
    ("expr: duet:request_errors:ratio_rate5m > 0.01", "expr: duet:request_errors:ratio_rate5m > 0.05"),
    ('up{job="duet-triton"} == 0', 'up{job="duet-triton"} == 2'),
    ("duet:triton_queue_time_seconds:avg1m > 0.1", "duet:triton_queue_time_seconds:avg1m > 0.5"),
    ("(duet_gateway_spool_quota_bytes > 0)\n          > 0.8", "(duet_gateway_spool_quota_bytes > 0)\n          > 0.9"),
    ('(duet_gateway_studies{state="dead_letter"}) > 0', '(duet_gateway_studies{state="dead_letter"}) > 2'),
    ('up{job="duet-gateway"} == 0', 'up{job="duet-gateway"} == 2'),
    ("unless on (namespace)", "and on (namespace)"),
])
def test_promtool_unit_tests_catch_a_changed_rule(tmp_path: Path, original: str, mutated: str):
    text = RULES_FILE.read_text()
    assert original in text
    (tmp_path / "prometheus-rules.yaml").write_text(text.replace(original, mutated))
    shutil.copy(RULES_TEST, tmp_path / "prometheus-rules.test.yaml")
    proc = subprocess.run([PROMTOOL, "test", "rules", str(tmp_path / "prometheus-rules.test.yaml")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0, "the unit tests did not notice a changed rule"


def test_every_alert_has_a_severity_and_a_runbook_section_that_exists():
    anchors = markdown_anchors(OPERATIONS_DOC.read_text())
    alerts = [r for r in all_rules() if "alert" in r]
    assert {a["alert"] for a in alerts} >= {
        "DuetHighErrorRatio", "DuetLatencyP99OverObjective", "DuetTritonQueueTimeHigh",
        "DuetTritonPendingRequestsGrowing", "DuetPredictorDown", "DuetGPUIdleWhileReady", "DuetGPUSaturated",
        "DuetReplicasPinnedAtMax", "DuetGatewayExportsFailing", "DuetGatewayDeadLetters",
        "DuetGatewaySpoolFilling", "DuetGatewayDown"}
    for alert in alerts:
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}
        url = alert["annotations"]["runbook_url"]
        base, anchor = url.split("#")
        assert base.endswith("/docs/operations.md")
        assert anchor == alert["alert"].lower(), url
        assert anchor in anchors, f"docs/operations.md has no section for {alert['alert']}"
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]


def test_rules_read_only_exported_series_and_recording_rules():
    records, _ = rule_names()
    known = TRANSFORMER_SERIES | TRITON_SERIES | GATEWAY_SERIES | OTHER_SERIES | records
    for rule in all_rules():
        unknown = series_used(rule["expr"]) - known
        assert not unknown, f"{rule.get('record') or rule.get('alert')} reads {unknown}"


def test_recording_rules_follow_level_metric_operations_naming():
    records, _ = rule_names()
    assert {"duet:triton_queue_time_seconds:avg1m", "duet:requests:rate1m", "duet:request_errors:ratio_rate5m",
            "duet:request_duration_seconds:p99_5m", "duet:triton_inflight:sum"} <= records
    for name in records:
        assert re.fullmatch(r"duet:[a-z0-9_]+:[a-z0-9_]+", name), name


def test_only_the_down_alerts_depend_on_job_labels():
    for rule in all_rules():
        uses_job = "job=" in rule["expr"]
        assert uses_job == (rule.get("alert") in {"DuetPredictorDown", "DuetTransformerDown", "DuetGatewayDown",
                                                   "DuetGPUIdleWhileReady"}), rule.get("alert") or rule["record"]
