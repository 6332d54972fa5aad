"""Two duet releases on one Prometheus, run by the real `promtool test rules` on the PrometheusRules the chart
renders for each: each release's alerts and recorded series see only its own targets. With the rules file as it
is (unscoped) release "b"'s targets would hide release "a"'s absent() alert, and each error would alert twice."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from chart_support import objects_of

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package `prometheus`)")


def rendered_rules(render, release: str, namespace: str, path: Path) -> Path:
    """The release's rendered rule groups as a rules file (annotations left out: these tests compare labels)."""
    rule = objects_of(render(release=release, namespace=namespace), "PrometheusRule")[0]
    groups = [{"name": f"{group['name']}.{release}",
               "rules": [{k: v for k, v in r.items() if k != "annotations"} for r in group["rules"]]}
              for group in rule["spec"]["groups"]]
    path.write_text(yaml.safe_dump({"groups": groups}))
    return path


def series(release: str, namespace: str, job: str, values: str, **labels: str) -> dict:
    matchers = {"namespace": namespace, "duet_release": release, "job": job, **labels}
    inner = ",".join(f'{k}="{v}"' for k, v in matchers.items())
    return {"series": f"up{{{inner}}}", "values": values}


def promtool_test(tmp_path: Path, rule_files: list[Path], input_series: list[dict], alerts: list[dict]) -> None:
    test = {"rule_files": [str(p) for p in rule_files], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": input_series, "alert_rule_test": alerts}]}
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    proc = subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_release_whose_predictor_is_gone_alerts_although_another_release_is_up(render, tmp_path: Path):
    rules = [rendered_rules(render, "a", "team-a", tmp_path / "a.yaml"),
             rendered_rules(render, "b", "team-b", tmp_path / "b.yaml")]
    up_b = [series("b", "team-b", "duet-triton", "1x20", instance="10.0.0.2:8002"),
            series("b", "team-b", "duet-transformer", "1x20", instance="10.0.0.3:8080")]
    up_a_transformer = [series("a", "team-a", "duet-transformer", "1x20", instance="10.0.1.3:8080")]
    promtool_test(tmp_path, rules, up_b + up_a_transformer, [
        # Release a has no Triton target at all: its absent() fires, once, although b's Triton is up.
        {"eval_time": "10m", "alertname": "DuetPredictorDown", "exp_alerts": [{
            "exp_labels": {"severity": "critical", "namespace": "team-a", "duet_release": "a",
                           "job": "duet-triton"},
            "exp_annotations": {}}]},
        {"eval_time": "10m", "alertname": "DuetTransformerDown", "exp_alerts": []},
    ])


def test_a_down_target_alerts_once_not_once_per_release(render, tmp_path: Path):
    rules = [rendered_rules(render, "a", "team-a", tmp_path / "a.yaml"),
             rendered_rules(render, "b", "team-b", tmp_path / "b.yaml")]
    targets = [series("a", "team-a", "duet-triton", "0x20", instance="10.0.1.2:8002"),
               series("a", "team-a", "duet-transformer", "1x20", instance="10.0.1.3:8080"),
               series("b", "team-b", "duet-triton", "1x20", instance="10.0.0.2:8002"),
               series("b", "team-b", "duet-transformer", "1x20", instance="10.0.0.3:8080")]
    promtool_test(tmp_path, rules, targets, [
        {"eval_time": "10m", "alertname": "DuetPredictorDown", "exp_alerts": [{
            "exp_labels": {"severity": "critical", "namespace": "team-a", "duet_release": "a",
                           "job": "duet-triton", "instance": "10.0.1.2:8002"},
            "exp_annotations": {}}]},
    ])
