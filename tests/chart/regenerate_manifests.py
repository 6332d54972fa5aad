"""Regenerate manifests/ from charts/duet: the plain-YAML install for non-Helm users.

    .venv/bin/python tests/chart/regenerate_manifests.py

manifests/base/ is the chart's default render for release `duet` in namespace `duet` (one file per object kind,
Helm's own labels removed) plus the namespace and a kustomization; manifests/kustomization.yaml installs it.
manifests/examples/ holds a kustomize overlay that swaps KServe's generated ScaledObjects for chart-owned ones
(ignoreNullValues "false", fallback) and a kube-prometheus-stack values excerpt. tests/chart/test_manifests.py
fails when the files drift from the chart.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))

import chart_support

MANIFESTS = chart_support.REPO / "manifests"
NAMESPACE = "duet"
RELEASE = "duet"
HEADER = ("# Generated from charts/duet by tests/chart/regenerate_manifests.py: edit the chart, then regenerate.\n"
          "# tests/chart/test_manifests.py fails when this file and the chart disagree.\n")

# Object kind -> file name in manifests/ (order = kustomization order).
FILES = {
    "ServiceAccount": "serviceaccount.yaml",
    "ServingRuntime": "servingruntime-triton.yaml",
    "InferenceService": "inferenceservices.yaml",
    "StatefulSet": "gateway-statefulset.yaml",
    "Service": "gateway-services.yaml",
    "NetworkPolicy": "networkpolicies.yaml",
    "PodMonitor": "podmonitors.yaml",
    "PrometheusRule": "prometheusrule.yaml",
    "PodDisruptionBudget": "poddisruptionbudgets.yaml",
    "ConfigMap": "grafana-dashboard.yaml",
}
# ConfigMaps other than the dashboard get a file of their own, by name suffix.
CONFIG_MAP_FILES = {"-artifact-check": "artifact-check.yaml"}


def file_of(obj: dict) -> str:
    """manifests/base file of one rendered object."""
    if obj["kind"] == "ConfigMap":
        for suffix, name in CONFIG_MAP_FILES.items():
            if obj["metadata"]["name"].endswith(suffix):
                return name
    return FILES[obj["kind"]]


def plain(obj: dict) -> dict:
    """A rendered object without Helm's bookkeeping labels."""
    labels = obj["metadata"].get("labels", {})
    labels.pop("helm.sh/chart", None)
    if labels.get("app.kubernetes.io/managed-by") == "Helm":
        labels["app.kubernetes.io/managed-by"] = "kustomize"
    return obj


def dump(objs: list[dict]) -> str:
    return HEADER + "---\n".join(yaml.safe_dump(o, sort_keys=False, width=120) for o in objs)


def expected_files() -> dict[str, str]:
    """Relative path -> content of every generated file."""
    files: dict[str, str] = {}
    default = [plain(o) for o in chart_support.render(release=RELEASE, namespace=NAMESPACE)]
    kinds = {o["kind"] for o in default}
    unknown = kinds - set(FILES)
    if unknown:
        raise SystemExit(f"no manifests/ file for kinds {sorted(unknown)}: extend FILES")
    namespace = {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": NAMESPACE, "labels": {"app.kubernetes.io/part-of": "duet"}}}
    files["base/namespace.yaml"] = dump([namespace])
    resources = ["namespace.yaml"]
    for name in [*FILES.values(), *CONFIG_MAP_FILES.values()]:
        objs = [o for o in default if file_of(o) == name]
        if objs:
            files[f"base/{name}"] = dump(objs)
            resources.append(name)
    files["base/kustomization.yaml"] = HEADER + yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "namespace": NAMESPACE,
        "resources": resources}, sort_keys=False)
    # `kubectl apply -k manifests/` installs the base.
    files["kustomization.yaml"] = HEADER + yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": ["base"]},
        sort_keys=False)

    # examples/keda-chart-owned: the base with chart-owned ScaledObjects; the InferenceServices are patched to
    # autoscalerClass=external without autoScaling, so KServe leaves scaling to the ScaledObjects.
    chart_owned = [plain(o) for o in chart_support.render(
        [chart_support.CHART / "ci" / "keda-chart-scaledobject-values.yaml"], release=RELEASE, namespace=NAMESPACE)]
    overlay = "examples/keda-chart-owned"
    files[f"{overlay}/scaledobjects.yaml"] = dump([o for o in chart_owned if o["kind"] == "ScaledObject"])
    patches = []
    for isvc in (o for o in default if o["kind"] == "InferenceService"):
        ops = [{"op": "replace", "path": "/metadata/annotations/serving.kserve.io~1autoscalerClass",
                "value": "external"}]
        ops += [{"op": "remove", "path": f"/spec/{component}/autoScaling"}
                for component in ("predictor", "transformer") if "autoScaling" in isvc["spec"][component]]
        patches.append({"target": {"group": "serving.kserve.io", "version": "v1beta1", "kind": "InferenceService",
                                   "name": isvc["metadata"]["name"]},
                        "patch": json.dumps(ops)})
    files[f"{overlay}/kustomization.yaml"] = HEADER + yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["../../base", "scaledobjects.yaml"],
        "patches": patches,
    }, sort_keys=False)
    files["examples/kube-prometheus-stack-values.yaml"] = (
        "# Excerpt of kube-prometheus-stack values that duet relies on (helm upgrade --install kube-prometheus-stack\n"
        "# prometheus-community/kube-prometheus-stack -n monitoring -f this-file).\n"
        + yaml.safe_dump({
            "prometheus": {"prometheusSpec": {
                # Select the PodMonitors / PrometheusRule labelled release=kube-prometheus-stack in any namespace.
                "podMonitorSelector": {"matchLabels": {"release": "kube-prometheus-stack"}},
                "ruleSelector": {"matchLabels": {"release": "kube-prometheus-stack"}},
                "podMonitorNamespaceSelector": {},
                "ruleNamespaceSelector": {},
            }},
            "grafana": {"sidecar": {"dashboards": {"enabled": True, "label": "grafana_dashboard",
                                                   "labelValue": "1", "searchNamespace": "ALL"}}},
            "kube-state-metrics": {"enabled": True},
        }, sort_keys=False))
    return files


def main() -> None:
    for relative, content in expected_files().items():
        path = MANIFESTS / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        print(f"wrote {path.relative_to(chart_support.REPO)}")


if __name__ == "__main__":
    main()
