"""charts/duet rendered by the real Helm engine (defaults and every ci/*-values.yaml) and validated object by
object: Kubernetes core kinds with kubernetes-validate, InferenceService / ServingRuntime with KServe's Python
SDK models and KServe's CRD schemas, KEDA and Prometheus-operator objects against their required fields."""

from __future__ import annotations

import copy
import re

import chart_support as helm_tools
import jsonschema
import kubernetes_validate
import pytest
import yaml
from chart_support import (
    CHART,
    VARIANTS,
    UnknownField,
    objects_of,
    rule_names,
    sdk_load,
    variant_files,
)
from kserve_rules import kserve_pods

K8S_VERSION = kubernetes_validate.latest_version()
KSERVE_KINDS = {"InferenceService": "V1beta1InferenceService", "ServingRuntime": "V1alpha1ServingRuntime"}
THIRD_PARTY_KINDS = {"PodMonitor", "PrometheusRule", "ScaledObject"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm_lint_strict_passes(helm, variant):
    out = helm_tools.lint(variant_files(variant))
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_rendered_kind_is_validated_by_some_check(renders, variant):
    kinds = {o["kind"] for o in renders[variant]}
    unvalidated = kinds - set(KSERVE_KINDS) - THIRD_PARTY_KINDS - {
        "NetworkPolicy", "ServiceAccount", "ConfigMap", "PodDisruptionBudget", "StatefulSet", "Service"}
    assert not unvalidated, f"rendered kinds without a validation test: {unvalidated}"


def test_default_render_has_the_expected_objects(renders):
    counts: dict[str, int] = {}
    for obj in helm_tools.without_gateway(renders["default"]):  # the gateway's: test_gateway_chart.py
        counts[obj["kind"]] = counts.get(obj["kind"], 0) + 1
    assert counts == {"InferenceService": 2, "ServingRuntime": 1, "NetworkPolicy": 4, "ServiceAccount": 1,
                      "PodMonitor": 2, "PrometheusRule": 1, "ConfigMap": 2, "PodDisruptionBudget": 4}
    assert {o["metadata"]["name"] for o in objects_of(renders["default"], "InferenceService")} == {
        "duet-mammography", "duet-sentiment"}


@pytest.mark.parametrize("variant", VARIANTS)
def test_core_kinds_validate_with_kubernetes_validate(renders, variant):
    checked = 0
    for obj in renders[variant]:
        if obj["kind"] in KSERVE_KINDS or obj["kind"] in THIRD_PARTY_KINDS:
            continue
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        checked += 1
    if variant != "minimal":
        assert checked >= 2


@pytest.mark.parametrize("variant", VARIANTS)
def test_pods_kserve_will_run_validate_as_core_pods(renders, variant):
    # The pods KServe builds: the component's pod fields, the predictor's runtime container (the chart's or
    # KServe's own) with the InferenceService's model fields merged in (kserve_rules.kserve_pods).
    pods = [pod for _, _, pod in kserve_pods(renders[variant])]
    assert pods
    for pod in pods:
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


@pytest.mark.parametrize("variant", VARIANTS)
def test_kserve_objects_load_into_kserve_sdk_models_without_unknown_fields(renders, variant):
    loaded = 0
    for obj in renders[variant]:
        if obj["kind"] in KSERVE_KINDS:
            model = sdk_load(obj, KSERVE_KINDS[obj["kind"]])
            assert model.metadata.name == obj["metadata"]["name"]
            loaded += 1
    assert loaded >= 1


def test_sdk_loader_rejects_an_unknown_field(renders):
    isvc = copy.deepcopy(objects_of(renders["default"], "InferenceService")[0])
    isvc["spec"]["predictor"]["model"]["readinessProbe"]["httpGet"]["paht"] = "/v2/health/ready"
    with pytest.raises(UnknownField, match="paht"):
        sdk_load(isvc, "V1beta1InferenceService")


@pytest.mark.parametrize("variant", VARIANTS)
def test_kserve_objects_validate_against_kserve_crd_schemas(renders, crds, variant):
    for obj in renders[variant]:
        key = f"{obj['apiVersion']}/{obj['kind']}"
        if obj["kind"] in KSERVE_KINDS:
            assert key in crds, f"no CRD schema for {key}"
            crds[key].validate(obj)


def test_crd_validation_rejects_unknown_fields_and_bad_enums(renders, crds):
    isvc = objects_of(renders["default"], "InferenceService")[0]
    validator = crds["serving.kserve.io/v1beta1/InferenceService"]
    validator.validate(isvc)
    typo = copy.deepcopy(isvc)
    typo["spec"]["predictor"]["minReplica"] = 1
    with pytest.raises(jsonschema.ValidationError, match="minReplica"):
        validator.validate(typo)
    bad_enum = copy.deepcopy(isvc)
    bad_enum["spec"]["predictor"]["autoScaling"]["metrics"][0]["external"]["metric"]["backend"] = "influx"
    with pytest.raises(jsonschema.ValidationError, match="influx"):
        validator.validate(bad_enum)


# ---- KEDA and Prometheus-operator objects: their required fields (no CRD schemas here) -----------------------

def check_scaled_object(obj: dict) -> None:
    spec = obj["spec"]
    assert spec["scaleTargetRef"]["name"]
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert spec["triggers"], "a ScaledObject needs triggers"
    if "fallback" in spec:
        assert spec["fallback"]["failureThreshold"] >= 1 and spec["fallback"]["replicas"] >= 1
    for trigger in spec["triggers"]:
        assert trigger["type"] == "prometheus"
        assert trigger.get("metricType", "AverageValue") in {"Value", "AverageValue"}
        meta = trigger["metadata"]
        assert all(isinstance(v, str) for v in meta.values()), "KEDA trigger metadata values are strings"
        assert meta["serverAddress"].startswith("http")
        assert meta["query"]
        float(meta["threshold"])


def check_pod_monitor(obj: dict) -> None:
    spec = obj["spec"]
    assert spec["selector"]["matchLabels"]
    assert spec["podMetricsEndpoints"]
    for endpoint in spec["podMetricsEndpoints"]:
        assert any(k in endpoint for k in ("port", "portNumber", "targetPort"))
        assert endpoint["path"] == "/metrics"
        for relabel in endpoint.get("relabelings", []):
            assert relabel.get("action", "replace") in {"replace", "keep", "drop", "labelmap", "labeldrop",
                                                        "labelkeep", "hashmod", "lowercase", "uppercase"}
            assert relabel["targetLabel"]


def check_prometheus_rule(obj: dict) -> None:
    groups = obj["spec"]["groups"]
    assert groups
    for group in groups:
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            assert ("record" in rule) != ("alert" in rule)
            assert rule["expr"]


THIRD_PARTY_CHECKS = {"ScaledObject": check_scaled_object, "PodMonitor": check_pod_monitor,
                      "PrometheusRule": check_prometheus_rule}


@pytest.mark.parametrize("variant", VARIANTS)
def test_keda_and_prometheus_objects_have_their_required_fields(renders, variant):
    for obj in renders[variant]:
        check = THIRD_PARTY_CHECKS.get(obj["kind"])
        if check:
            assert obj["apiVersion"] in {"keda.sh/v1alpha1", "monitoring.coreos.com/v1"}
            assert obj["metadata"]["name"] and obj["metadata"]["namespace"]
            check(obj)


def test_required_field_checks_catch_a_broken_scaled_object(renders):
    scaled = copy.deepcopy(objects_of(renders["keda-chart-scaledobject"], "ScaledObject")[0])
    del scaled["spec"]["triggers"][0]["metadata"]["threshold"]
    with pytest.raises(KeyError):
        check_scaled_object(scaled)


# ---- What the chart must say ----------------------------------------------------------------------------------

def test_serving_runtime_pins_a_current_triton_with_metrics_model_control_and_exit_timeout(renders):
    runtime = objects_of(renders["default"], "ServingRuntime")[0]
    container = runtime["spec"]["containers"][0]
    year, month = map(int, re.search(r":(\d+)\.(\d+)-py3", container["image"]).groups())
    assert (year, month) >= (25, 1), "Triton must be a current release, not KServe's 23.05 default"
    args = container["args"]
    for flag in ("--allow-metrics=true", "--metrics-port=8002", "--model-control-mode=explicit",
                 "--exit-timeout-secs=30", "--model-repository=/mnt/models"):
        assert flag in args
    # autoSelect false: the runtime must not capture other teams' Triton InferenceServices in the namespace.
    assert {"name": "triton", "version": "2", "autoSelect": False} in runtime["spec"]["supportedModelFormats"]
    assert "grpc-v2" in runtime["spec"]["protocolVersions"]
    assert container["ports"][0] == {"name": "h2c", "containerPort": 9000, "protocol": "TCP"}


def test_inference_services_pair_triton_predictor_and_transformer_on_one_storage_uri(renders):
    for isvc in objects_of(renders["default"], "InferenceService"):
        model_name = isvc["metadata"]["labels"]["duet/model"]
        predictor, transformer = isvc["spec"]["predictor"], isvc["spec"]["transformer"]
        assert predictor["model"]["modelFormat"] == {"name": "triton"}
        assert predictor["model"]["runtime"] == "duet-tritonserver"
        assert predictor["minReplicas"] >= 1 and transformer["minReplicas"] >= 1
        container = transformer["containers"][0]
        args = container["args"]
        assert f"--model={model_name}" in args
        assert "--predictor_protocol=grpc-v2" in args
        # <name>.<namespace> as KServe passes it: no cluster domain (fix 10).
        assert f"--predictor_host={isvc['metadata']['name']}-predictor.duet:80" in args
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["STORAGE_URI"] == predictor["model"]["storageUri"]
        assert env["DUET_MODEL_REPOSITORY"] == "/mnt/models"
    triton_models = {isvc["metadata"]["labels"]["duet/model"]: isvc["spec"]["predictor"]["model"]["args"]
                     for isvc in objects_of(renders["default"], "InferenceService")}
    assert triton_models == {"mammography": ["--load-model=mammo_detector"], "sentiment": ["--load-model=sentiment"]}


def test_storage_defaults_to_the_model_image_and_digests_pin_images(render):
    default = objects_of(render(), "InferenceService")[0]
    assert default["spec"]["predictor"]["model"]["storageUri"] == "oci://ghcr.io/duet-serving/duet-models:0.1.0"
    digest = "sha256:" + "ab" * 32
    pinned = render(set_values={"modelRepository.image.digest": digest, "transformer.image.digest": digest,
                                "triton.image.digest": digest})
    isvc = objects_of(pinned, "InferenceService")[0]
    assert isvc["spec"]["predictor"]["model"]["storageUri"].endswith(f":0.1.0@{digest}")
    assert isvc["spec"]["transformer"]["containers"][0]["image"].endswith(f"@{digest}")
    assert objects_of(pinned, "ServingRuntime")[0]["spec"]["containers"][0]["image"].endswith(f"@{digest}")
    own = render(set_values={"models.sentiment.storageUri": "pvc://models/duet"})
    by_model = {o["metadata"]["labels"]["duet/model"]: o for o in objects_of(own, "InferenceService")}
    assert by_model["sentiment"]["spec"]["predictor"]["model"]["storageUri"] == "pvc://models/duet"
    assert by_model["mammography"]["spec"]["predictor"]["model"]["storageUri"].startswith("oci://")


def test_existing_secret_is_attached_to_the_service_account(renders):
    account = objects_of(renders["ha"], "ServiceAccount")[0]
    assert account["secrets"] == [{"name": "duet-s3-credentials"}]
    assert account["automountServiceAccountToken"] is False
    assert "secrets" not in objects_of(renders["default"], "ServiceAccount")[0]


def test_tensorrt_switch_selects_the_fp16_model_config(renders, render):
    args = objects_of(renders["default"], "ServingRuntime")[0]["spec"]["containers"][0]["args"]
    assert not any(a.startswith("--model-config-name") for a in args)
    args = objects_of(renders["ha"], "ServingRuntime")[0]["spec"]["containers"][0]["args"]
    assert "--model-config-name=tensorrt_fp16" in args
    with pytest.raises(helm_tools.HelmError, match="set only one"):
        render(set_values={"triton.tensorrt.enabled": True, "triton.modelConfigName": "cpu"})


def test_keda_mode_uses_recording_rules_in_inference_service_autoscaling(renders):
    records, _ = rule_names()
    for isvc in objects_of(renders["default"], "InferenceService"):
        assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "keda"
        assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
        for component in ("predictor", "transformer"):
            for metric in isvc["spec"][component]["autoScaling"]["metrics"]:
                query = metric["external"]["metric"]["query"]
                used = re.findall(r"duet:[a-z_]+:[a-z0-9_]+", query)
                assert used and set(used) <= records, query
                assert 'namespace="duet",duet_release="duet"' in query
                assert re.match(r"^(max|sum)\(", query), "KEDA needs a single-sample result"
    mammo = next(o for o in objects_of(renders["default"], "InferenceService")
                 if o["metadata"]["name"] == "duet-mammography")
    queries = [m["external"]["metric"]["query"] for m in mammo["spec"]["predictor"]["autoScaling"]["metrics"]]
    # Only the in-flight sum: KEDA reads KServe's triggers as AverageValue (kserve_rules.KSERVE_KEDA_METRIC_TYPE).
    assert queries == ['sum(duet:triton_inflight:sum{namespace="duet",duet_release="duet", model="mammo_detector"})']


def test_chart_owned_scaled_objects_refuse_null_values_and_fall_back(renders):
    objs = renders["keda-chart-scaledobject"]
    for isvc in objects_of(objs, "InferenceService"):
        assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "external"
        assert "autoScaling" not in isvc["spec"]["predictor"]
    scaled = objects_of(objs, "ScaledObject")
    assert sorted(s["spec"]["scaleTargetRef"]["name"] for s in scaled) == [
        "duet-mammography-predictor", "duet-mammography-transformer",
        "duet-sentiment-predictor", "duet-sentiment-transformer"]
    for obj in scaled:
        assert obj["spec"]["fallback"] == {"failureThreshold": 4, "replicas": 1, "behavior": "currentReplicasIfHigher"}
        for trigger in obj["spec"]["triggers"]:
            assert trigger["metadata"]["ignoreNullValues"] == "false"
    queue = [t for s in scaled for t in s["spec"]["triggers"] if t["name"] == "queue-time"]
    assert queue and all(t["metricType"] == "Value" for t in queue)


def test_hpa_and_knative_modes(renders, render):
    for isvc in objects_of(renders["hpa"], "InferenceService"):
        assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "hpa"
        metric = isvc["spec"]["predictor"]["autoScaling"]["metrics"][0]
        assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    for isvc in objects_of(renders["knative"], "InferenceService"):
        assert isvc["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Knative"}
        for component in ("predictor", "transformer"):
            assert isvc["spec"][component]["scaleMetric"] == "concurrency"
            assert isvc["spec"][component]["containerConcurrency"] == 64
        assert [p["name"] for p in isvc["spec"]["transformer"]["containers"][0]["ports"]] == ["http1"]
    runtime = objects_of(renders["knative"], "ServingRuntime")[0]
    assert [p["name"] for p in runtime["spec"]["containers"][0]["ports"]] == ["h2c"]
    with pytest.raises(helm_tools.HelmError, match="needs kserve.deploymentMode=Standard"):
        render(set_values={"kserve.deploymentMode": "Knative", "autoscaling.mode": "keda"})
    with pytest.raises(helm_tools.HelmError, match="needs kserve.deploymentMode=Knative"):
        render(set_values={"autoscaling.mode": "knative"})
    with pytest.raises(helm_tools.HelmError, match="below minReplicas"):
        render(set_values={"models.sentiment.predictor.minReplicas": 3, "models.sentiment.predictor.maxReplicas": 2})


def test_prometheus_rule_embeds_the_rules_file_with_overridable_job_labels_and_runbooks(renders, render):
    source = yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())
    rendered = objects_of(renders["default"], "PrometheusRule")[0]
    unscoped = copy.deepcopy(rendered["spec"]["groups"])
    for group in unscoped:
        for rule in group["rules"]:
            # The release scope the template adds (duet.scopeExpr), taken off again: the rest is the file.
            expr = re.sub(r'namespace="duet"(,duet_release="duet")?,?', "", rule["expr"])
            rule["expr"] = expr.replace("{}", "")
            if "record" in rule:
                assert rule.pop("labels") == {"duet_release": "duet"}
    assert unscoped == source["groups"]
    custom = render(set_values={"monitoring.jobLabels.triton": "gpu-triton",
                                "monitoring.runbookBaseUrl": "https://runbooks.example.org/duet/ops.html"})
    text = yaml.safe_dump(objects_of(custom, "PrometheusRule")[0])
    assert 'job="gpu-triton"' in text and 'job="duet-triton"' not in text
    assert 'job="duet-transformer"' in text
    assert "https://runbooks.example.org/duet/ops.html#duetpredictordown" in text
    assert "github.com/duet-serving" not in text
    monitors = {m["metadata"]["name"]: m for m in objects_of(custom, "PodMonitor")}
    relabelings = monitors["duet-triton"]["spec"]["podMetricsEndpoints"][0]["relabelings"]
    assert {"action": "replace", "targetLabel": "job", "replacement": "gpu-triton"} in relabelings


def test_dashboard_config_map_carries_the_sidecar_label_and_the_dashboard(renders):
    config_map = next(c for c in objects_of(renders["default"], "ConfigMap")
                      if c["metadata"]["name"] == "duet-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["data"]["duet.json"] == (CHART / "files" / "dashboard.json").read_text().rstrip("\n")


def test_switches_turn_integrations_off(renders):
    kinds = {o["metadata"]["name"]: o["kind"] for o in helm_tools.without_gateway(renders["minimal"])}
    # The artifact check is not an integration: it stays on (triton.artifact.verifyDigests). The gateway is a
    # workload of its own (tests/chart/test_gateway_chart.py): minimal's has no monitor or policy either.
    assert kinds == {"duet-sentiment": "InferenceService", "duet-artifact-check": "ConfigMap"}
    gateway = [o for o in renders["minimal"] if o not in helm_tools.without_gateway(renders["minimal"])]
    gateway_kinds = sorted(o["kind"] for o in gateway)
    assert gateway_kinds == ["Service", "Service", "Service", "StatefulSet"]
    isvc = objects_of(renders["minimal"], "InferenceService")[0]
    assert isvc["metadata"]["name"] == "duet-sentiment"
    assert isvc["spec"]["predictor"]["serviceAccountName"] == "default"
    assert "args" not in isvc["spec"]["predictor"]["model"], "modelControlMode none loads the whole repository"


def test_notes_tell_how_to_call_both_models(helm):
    out = helm_tools.run_helm(["install", "duet", str(CHART), "--namespace", "duet", "--dry-run=client"])
    notes = out.split("NOTES:", 1)[1]
    assert "/v2/models/sentiment/infer" in notes
    assert "/v2/models/mammography/infer" in notes
    assert "duet cluster smoke" in notes
    assert "kubectl -n duet get inferenceservice duet-mammography" in notes


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_object_carries_the_standard_labels_from_one_helper(renders, variant):
    expected = {"helm.sh/chart": "duet-0.1.0", "app.kubernetes.io/name": "duet", "app.kubernetes.io/instance": "duet",
                "app.kubernetes.io/version": "0.1.0", "app.kubernetes.io/managed-by": "Helm",
                "app.kubernetes.io/part-of": "duet"}
    versioned = {"helm.sh/chart", "app.kubernetes.io/version"}
    for obj in renders[variant]:
        labels = obj["metadata"]["labels"]
        if obj["kind"] == "InferenceService":
            # KServe copies these onto the pod templates: a version label would restart every GPU pod on each
            # chart bump (kserve_rules.KSERVE_COPIES_ISVC_LABELS_TO_PODS).
            assert not versioned & labels.keys(), obj["metadata"]["name"]
            assert {k: v for k, v in expected.items() if k not in versioned}.items() <= labels.items()
        else:
            assert expected.items() <= labels.items(), (obj["kind"], obj["metadata"]["name"])
