"""The Grafana dashboard (charts/duet/files/dashboard.json): well-formed, covers RED per model, the stage
breakdown, Triton's queue/compute split, achieved batch size and replicas, and every panel query reads only
exported series or recording rules and is valid PromQL (promtool parses each one)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from chart_support import CHART, OTHER_SERIES, TRANSFORMER_SERIES, TRITON_SERIES, rule_names, series_used

DASHBOARD = json.loads((CHART / "files" / "dashboard.json").read_text())
PANELS = [p for p in DASHBOARD["panels"] if p["type"] != "row"]
# Grafana variables in queries, replaced the way Grafana does for the "All" selection.
VARIABLES = {"$namespace": ".*"}


def expand(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def all_exprs() -> list[tuple[str, str]]:
    return [(panel["title"], expand(target["expr"])) for panel in PANELS for target in panel["targets"]]


def test_dashboard_is_well_formed():
    assert DASHBOARD["uid"] == "duet-serving"
    assert {v["name"] for v in DASHBOARD["templating"]["list"]} == {"datasource", "namespace"}
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for panel in PANELS:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        assert panel["targets"] and panel["description"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])


def test_dashboard_covers_red_stages_triton_split_batching_and_replicas():
    exprs = " ".join(expr for _, expr in all_exprs())
    for needed in ("duet:requests:rate1m", "duet:request_errors:ratio_rate5m", "duet:request_duration_seconds:p99_5m",
                   "duet:stage_duration_seconds:avg5m", "duet:triton_queue_time_seconds:avg1m",
                   "duet:triton_compute_time_seconds:avg1m", "duet:triton_batch_size:avg1m",
                   "duet:triton_replicas:count", "duet:transformer_replicas:count"):
        assert needed in exprs, needed


def test_every_query_reads_exported_series_or_recording_rules():
    records, _ = rule_names()
    known = TRANSFORMER_SERIES | TRITON_SERIES | OTHER_SERIES | records
    for title, expr in all_exprs():
        unknown = series_used(expr) - known
        assert not unknown, f"panel {title!r} reads {unknown}"


def test_cluster_only_panels_are_marked_as_such():
    """Panels that need kube-state-metrics or a GPU say "Cluster only" (the local live check skips them)."""
    for panel in PANELS:
        needs_cluster = any(name.startswith(("kube_", "nv_gpu_"))
                            for target in panel["targets"] for name in series_used(target["expr"]))
        assert needs_cluster == panel["description"].startswith("Cluster only"), panel["title"]


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (Debian package `prometheus`)")
def test_every_query_is_valid_promql(tmp_path: Path):
    rules = [{"record": f"duet_dashboard_check:panel{i}:expr", "expr": expr} for i, (_, expr) in
             enumerate(all_exprs())]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
        {"record": "duet_dashboard_check:broken:expr", "expr": "sum by (model (duet:requests:rate1m)"}]}]}))
    proc = subprocess.run(["promtool", "check", "rules", str(broken)], capture_output=True, text=True, check=False)
    assert proc.returncode != 0, "promtool accepted broken PromQL: this check would prove nothing"
