"""manifests/ (plain YAML for non-Helm users): identical to what the chart renders (no drift), buildable by the
real kustomize (`kubectl kustomize`, offline), valid, and the KEDA overlay really hands scaling to chart-owned
ScaledObjects."""

from __future__ import annotations

import subprocess

import chart_support
import kubernetes_validate
import pytest
import regenerate_manifests
import yaml
from chart_support import REPO, sdk_load

MANIFESTS = REPO / "manifests"


@pytest.fixture(scope="module")
def expected(helm) -> dict[str, str]:
    return regenerate_manifests.expected_files()


@pytest.fixture(scope="module")
def kustomize():
    try:
        binary = chart_support.kubectl_binary()
    except chart_support.HelmUnavailable as exc:
        pytest.skip(f"no kubectl binary: {exc}")

    def build(path) -> list[dict]:
        proc = subprocess.run([str(binary), "kustomize", str(path)], capture_output=True, text=True, timeout=120,
                              check=False)
        assert proc.returncode == 0, proc.stderr
        return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]

    return build


def test_manifests_match_the_chart(expected):
    actual = {str(p.relative_to(MANIFESTS)): p.read_text() for p in MANIFESTS.rglob("*") if p.is_file()}
    assert set(actual) == set(expected), "run: .venv/bin/python tests/chart/regenerate_manifests.py"
    stale = [name for name in expected if actual[name] != expected[name]]
    assert not stale, f"stale manifests {stale}; run: .venv/bin/python tests/chart/regenerate_manifests.py"


def key(obj: dict) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def test_kustomize_builds_the_base_with_every_object_of_the_chart(kustomize, render):
    built = {key(o): o for o in kustomize(MANIFESTS)}
    chart = {key(o): regenerate_manifests.plain(o) for o in render()}
    assert set(built) == set(chart) | {("Namespace", "duet")}
    for name, obj in chart.items():
        assert built[name] == obj, name
    for obj in built.values():
        assert obj["metadata"].get("namespace", "duet") == "duet"


def test_built_manifests_validate(kustomize):
    for obj in kustomize(MANIFESTS):
        if obj["kind"] == "InferenceService":
            sdk_load(obj, "V1beta1InferenceService")
        elif obj["kind"] == "ServingRuntime":
            sdk_load(obj, "V1alpha1ServingRuntime")
        elif obj["apiVersion"] not in {"monitoring.coreos.com/v1", "keda.sh/v1alpha1"}:
            kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)


def test_keda_overlay_hands_scaling_to_chart_owned_scaled_objects(kustomize, render):
    built = kustomize(MANIFESTS / "examples" / "keda-chart-owned")
    chart = [regenerate_manifests.plain(o)
             for o in render([chart_support.CHART / "ci" / "keda-chart-scaledobject-values.yaml"])]
    for kind in ("InferenceService", "ScaledObject"):
        assert sorted((o for o in built if o["kind"] == kind), key=key) == sorted(
            (o for o in chart if o["kind"] == kind), key=key), kind
    triggers = [t for o in built if o["kind"] == "ScaledObject" for t in o["spec"]["triggers"]]
    assert triggers and all(t["metadata"]["ignoreNullValues"] == "false" for t in triggers)


def test_kube_prometheus_stack_excerpt_selects_the_chart_labels(render):
    values = yaml.safe_load((MANIFESTS / "examples" / "kube-prometheus-stack-values.yaml").read_text())
    spec = values["prometheus"]["prometheusSpec"]
    objs = render()
    monitor = next(o for o in objs if o["kind"] == "PodMonitor")
    rule = next(o for o in objs if o["kind"] == "PrometheusRule")
    for selector, obj in ((spec["podMonitorSelector"], monitor), (spec["ruleSelector"], rule)):
        assert selector["matchLabels"].items() <= obj["metadata"]["labels"].items()
    dashboard = next(o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard"))
    sidecar = values["grafana"]["sidecar"]["dashboards"]
    assert dashboard["metadata"]["labels"][sidecar["label"]] == sidecar["labelValue"]
