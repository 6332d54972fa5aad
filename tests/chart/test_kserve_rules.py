"""Every rendered variant (defaults and each ci/*-values.yaml) against KServe's and Knative's own rules
(kserve_rules.py, each rule citing its source): the semantics a CRD schema cannot see. No cluster runs here;
these tests stand in for one by applying what KServe's controllers and Knative's webhook do to the objects."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import chart_support as helm_tools
import pytest
import yaml
from chart_support import VARIANTS, objects_of, variant_files
from kserve.constants.constants import MAX_GRPC_MESSAGE_LENGTH
from kserve_rules import (
    ACCEPTED_MODE_NAMES,
    AUTOSCALER_CLASSES,
    AUTOSELECT_CAPTURES_OTHERS,
    CHART_FEATURE_KEYS,
    DEFAULT_CONTAINER_PORT,
    GPU_ROLLOUT,
    KEDA_DEFAULT_METRIC_TYPE,
    KEDA_FIELD_MIN_VERSION,
    KNATIVE_USER_PORT_NAME,
    KSERVE_AUTOSCALER_NAME,
    KSERVE_CLUSTER_RUNTIMES,
    KSERVE_COPIES_ISVC_LABELS_TO_PODS,
    KSERVE_DEFAULT_ROLLOUT,
    KSERVE_DELETES_AUTOSCALER_ON_CLASS_CHANGE,
    KSERVE_KEDA_METRIC_TYPE,
    LOGICAL_MODE,
    PREDICTOR_HOST_SUFFIX_FORBIDDEN,
    RECORDED_MODE,
    SERVICE_PORT,
    VERSIONED_LABELS,
    apply_knative,
    apply_modelcar,
    apply_storage_initializer,
    flag_args,
    knative_rejections,
    kserve_line,
    kserve_pods,
    merged_values,
    restricted_violations,
)

MODE = "serving.kserve.io/deploymentMode"
AUTOSCALER = "serving.kserve.io/autoscalerClass"
# A full-size 4-view study: four 4096 x 3328 16-bit uncompressed views (docs/benchmarks.md's headline case).
FULL_STUDY_BYTES = 4 * 4096 * 3328 * 2


def values_of(variant: str) -> dict:
    return merged_values(variant_files(variant))


def transformer_container(isvc: dict) -> dict:
    return isvc["spec"]["transformer"]["containers"][0]


# ---- Deployment-mode names --------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_kserve_rules_mode_annotation_is_accepted_and_recorded_verbatim(renders, variant):
    values = values_of(variant)
    line = kserve_line(values["kserve"]["version"])
    for isvc in objects_of(renders[variant], "InferenceService"):
        name = isvc["metadata"]["annotations"][MODE]
        assert name in ACCEPTED_MODE_NAMES[line], f"KServe {line} ignores mode {name} and uses its default"
        assert RECORDED_MODE[line][name] == name, (
            f"KServe {line} records {RECORDED_MODE[line][name]} for {name}: every later upgrade would be refused")
        assert LOGICAL_MODE[name] == values["kserve"]["deploymentMode"]


@pytest.mark.parametrize(("version", "mode", "expected"), [
    ("0.15", "Standard", "RawDeployment"), ("0.15", "Knative", "Serverless"),
    ("0.16", "Standard", "Standard"), ("0.16", "Knative", "Knative"), ("0.19", "Standard", "Standard"),
])
def test_kserve_rules_mode_names_follow_the_kserve_version(render, version, mode, expected):
    set_values = {"kserve.version": version, "kserve.deploymentMode": mode}
    if mode == "Knative":
        set_values.update({"autoscaling.mode": "knative", "kserve.knativeFeatures.nodeSelector": True,
                           "kserve.knativeFeatures.tolerations": True})
    for isvc in objects_of(render(set_values=set_values), "InferenceService"):
        assert isvc["metadata"]["annotations"][MODE] == expected
        assert expected in ACCEPTED_MODE_NAMES[kserve_line(version)]


def test_kserve_rules_versions_before_0_15_are_refused(render):
    with pytest.raises(helm_tools.HelmError, match="/kserve/version"):
        render(set_values={"kserve.version": "0.14"})


# ---- Knative's PodSpec field mask and feature flags -------------------------------------------------------------

KNATIVE_VARIANTS = [v for v in VARIANTS if values_of(v)["kserve"]["deploymentMode"] == "Knative"]


def test_kserve_rules_some_variants_run_in_knative_mode():
    assert len(KNATIVE_VARIANTS) >= 2, "the Knative rules need a variant with flags on and one with defaults"


def enabled_flags(variant: str) -> set[str]:
    features = values_of(variant)["kserve"]["knativeFeatures"]
    return {flag for flag, key in CHART_FEATURE_KEYS.items() if features[key]}


@pytest.mark.parametrize("variant", KNATIVE_VARIANTS)
def test_kserve_rules_knative_admits_every_pod(renders, variant):
    for isvc, component, pod in kserve_pods(renders[variant]):
        assert knative_rejections(pod, enabled_flags(variant)) == [], (isvc["metadata"]["name"], component)


def test_kserve_rules_knative_check_refuses_what_the_chart_used_to_render(renders):
    """The check can fail: the pod fields the chart rendered before it knew Knative's mask are refused."""
    _, _, pod = next(kserve_pods(renders["knative-kserve-runtime"]))
    pod["spec"].update({"terminationGracePeriodSeconds": 45, "nodeSelector": {"nvidia.com/gpu.present": "true"},
                        "securityContext": {"runAsNonRoot": True}})
    pod["spec"]["containers"][0]["startupProbe"] = {"tcpSocket": {"port": 8080}}
    pod["spec"]["containers"][0]["ports"] = [{"containerPort": 9000}, {"containerPort": 8080}]
    problems = " ".join(knative_rejections(pod, set()))
    for expected in ("terminationGracePeriodSeconds (never allowed)", "kubernetes.podspec-nodeselector",
                     "kubernetes.podspec-securitycontext", "startupProbe", "2 ports"):
        assert expected in problems


@pytest.mark.parametrize(("field", "value", "flag"), [
    ("triton.tolerations[0].key", "nvidia.com/gpu", "kubernetes.podspec-tolerations"),
    ("transformer.nodeSelector.pool", "cpu", "kubernetes.podspec-nodeselector"),
    ("transformer.affinity.nodeAffinity.x", "y", "kubernetes.podspec-affinity"),
])
def test_kserve_rules_knative_values_needing_a_disabled_flag_fail_at_install(render, field, value, flag):
    base = helm_tools.CHART / "ci" / "knative-kserve-runtime-values.yaml"
    with pytest.raises(helm_tools.HelmError, match=re.escape(flag)):
        render([base], set_values={field: value})


def test_kserve_rules_knative_pod_security_context_follows_its_flag(render):
    knative = helm_tools.CHART / "ci" / "knative-values.yaml"
    without = objects_of(render([knative]), "InferenceService")[0]["spec"]["predictor"]
    assert "securityContext" not in without
    with_flag = objects_of(render([knative], {"kserve.knativeFeatures.podSecurityContext": True}),
                           "InferenceService")[0]["spec"]["predictor"]
    assert with_flag["securityContext"]["runAsNonRoot"] is True


# ---- Ports: what the predictor Service reaches, and which protocol the transformer speaks there ---------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_kserve_rules_transformer_speaks_the_protocol_of_the_port_the_predictor_service_reaches(renders, variant):
    pods = {(isvc["metadata"]["name"], component): pod for isvc, component, pod in kserve_pods(renders[variant])}
    for isvc in objects_of(renders[variant], "InferenceService"):
        predictor = pods[(isvc["metadata"]["name"], "predictor")]["spec"]["containers"][0]
        ports = predictor.get("ports") or []
        target = ports[0]["containerPort"] if ports else DEFAULT_CONTAINER_PORT
        triton = flag_args(predictor["args"])
        listeners = {int(triton["--grpc-port"]): "grpc-v2", int(triton["--http-port"]): "v2"}
        assert target in listeners, f"the predictor Service targets {target}, where Triton does not listen"
        args = flag_args(transformer_container(isvc)["args"])
        assert args["--predictor_protocol"] == listeners[target], (
            f"Service port {SERVICE_PORT} reaches Triton's {listeners[target]} port {target}")
        assert args["--predictor_host"].endswith(f":{SERVICE_PORT}")
        assert isvc["spec"]["predictor"]["model"]["protocolVersion"] == listeners[target]


def test_kserve_rules_helm_applies_inference_services_before_the_serving_runtime(helm):
    """Why the runtime's name matters: Helm orders kinds it does not know alphabetically, so every install
    creates the InferenceServices first and KServe reconciles them before their ServingRuntime exists."""
    out = helm_tools.run_helm(["install", "duet", str(helm_tools.CHART), "-n", "duet", "--dry-run=client"])
    kinds = [doc["kind"] for doc in yaml.safe_load_all(out.split("NOTES:", 1)[0].split("MANIFEST:", 1)[1]) if doc]
    assert kinds.index("InferenceService") < kinds.index("ServingRuntime")


@pytest.mark.parametrize("variant", VARIANTS)
def test_kserve_rules_a_created_runtime_is_not_shadowed_by_a_kserve_cluster_runtime(renders, variant):
    runtimes = objects_of(renders[variant], "ServingRuntime")
    for runtime in runtimes:
        assert runtime["metadata"]["name"] not in KSERVE_CLUSTER_RUNTIMES
    for isvc in objects_of(renders[variant], "InferenceService"):
        name = isvc["spec"]["predictor"]["model"]["runtime"]
        assert name in {r["metadata"]["name"] for r in runtimes} or name in KSERVE_CLUSTER_RUNTIMES


def test_kserve_rules_explicit_model_control_needs_the_charts_runtime(render):
    with pytest.raises(helm_tools.HelmError, match="modelControlMode=explicit needs triton.runtime.create"):
        render(set_values={"triton.runtime.create": False, "monitoring.podMonitor.enabled": False})


def test_kserve_rules_triton_pod_monitor_needs_the_charts_runtime(render):
    """KServe's runtime declares no metrics port for a PodMonitor to select."""
    with pytest.raises(helm_tools.HelmError, match="declares no metrics port"):
        render(set_values={"triton.runtime.create": False, "triton.modelControlMode": "none"})


# ---- Autoscaler classes -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_kserve_rules_autoscaler_class_does_what_the_mode_promises(renders, variant):
    values = values_of(variant)
    mode, owner = values["autoscaling"]["mode"], values["autoscaling"]["keda"]["scaledObject"]
    objs = renders[variant]
    scaled = {s["spec"]["scaleTargetRef"]["name"] for s in objects_of(objs, "ScaledObject")}
    for isvc in objects_of(objs, "InferenceService"):
        annotations = isvc["metadata"]["annotations"]
        if LOGICAL_MODE[annotations[MODE]] == "Knative":
            assert AUTOSCALER not in annotations, "Knative mode keeps KServe's default there (kpa)"
            continue
        cls = annotations[AUTOSCALER]
        assert cls in AUTOSCALER_CLASSES and cls != "kpa"
        expected = {"none": "none", "hpa": "hpa", "keda": "keda" if owner == "kserve" else "external"}[mode]
        if isvc["metadata"]["labels"].get("duet/track") == "canary":
            expected = "none"  # a Standard-mode canary runs a fixed replica count
        assert cls == expected, f"autoscaling.mode={mode}: {AUTOSCALER_CLASSES[expected]}"
        for component in ("predictor", "transformer"):
            spec = isvc["spec"][component]
            has_metrics = "autoScaling" in spec
            assert has_metrics == (cls in ("hpa", "keda")), (component, cls)
            deployment = f"{isvc['metadata']['name']}-{component}"
            assert (deployment in scaled) == (cls == "external"), "external needs an owner for the replicas"


def test_kserve_rules_autoscaling_none_is_refused_in_knative_mode(render):
    with pytest.raises(helm_tools.HelmError, match="autoscaling.mode=none needs kserve.deploymentMode=Standard"):
        render([helm_tools.CHART / "ci" / "knative-values.yaml"], {"autoscaling.mode": "none"})


# ---- Modelcar and the restricted Pod Security level -------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_kserve_rules_modelcar_loses_the_restricted_level_and_other_storage_keeps_it(renders, variant):
    for isvc, component, pod in kserve_pods(renders[variant]):
        uri = isvc["spec"]["predictor"]["model"]["storageUri"]
        assert restricted_violations(pod) == [], (isvc["metadata"]["name"], component)
        if uri.startswith("oci://"):
            # What KServe's webhook makes of it, with and without uidModelcar: never restricted.
            assert restricted_violations(apply_modelcar(pod))
            assert restricted_violations(apply_modelcar(pod, uid=None))


def test_kserve_rules_notes_warn_about_modelcar_exactly_when_storage_is_oci(helm):
    def notes(*args: str) -> str:
        out = helm_tools.run_helm(["install", "duet", str(helm_tools.CHART), "-n", "duet", "--dry-run=client", *args])
        return out.split("NOTES:", 1)[1]

    assert "modelcar" in notes()
    assert "modelcar" not in notes("--set", "modelRepository.storageUri=s3://bucket/repo")


# ---- gRPC message limits ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_kserve_rules_grpc_limits_admit_a_full_size_study(renders, variant):
    assert MAX_GRPC_MESSAGE_LENGTH < FULL_STUDY_BYTES, "KServe's default would refuse a study"
    for isvc in objects_of(renders[variant], "InferenceService"):
        container = transformer_container(isvc)
        args = flag_args(container["args"])
        env = {e["name"]: e.get("value") for e in container["env"]}
        limit = int(env["DUET_MAX_REQUEST_BYTES"])
        assert limit > FULL_STUDY_BYTES
        assert int(args["--grpc_max_receive_message_length"]) == limit
        assert int(args["--grpc_max_send_message_length"]) == limit


# ---- Upgrades keep the mode name KServe recorded --------------------------------------------------------------

@pytest.fixture(scope="module")
def mode_probe_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway chart holding duet's helpers and one template that calls the mode helper with a given
    recorded mode: `lookup` (which supplies it on a real upgrade) is empty without a cluster."""
    chart = tmp_path_factory.mktemp("mode-probe")
    (chart / "templates").mkdir()
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: duet\nversion: 0.1.0\n")
    shutil.copy(helm_tools.CHART / "values.yaml", chart / "values.yaml")
    shutil.copy(helm_tools.CHART / "templates" / "_helpers.tpl", chart / "templates" / "_helpers.tpl")
    (chart / "templates" / "probe.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\ndata:\n"
        '  mode: {{ include "duet.modeAnnotation" (dict "root" $ "isvc" "duet-sentiment" '
        '"recorded" .Values.recorded) | quote }}\n')
    return chart


@pytest.mark.parametrize(("version", "mode", "recorded", "expected"), [
    ("0.16", "Standard", "", "Standard"),
    ("0.15", "Standard", "", "RawDeployment"),
    # Created under KServe 0.15, KServe since upgraded to 0.16: keep what KServe recorded.
    ("0.16", "Standard", "RawDeployment", "RawDeployment"),
    ("0.16", "Knative", "Serverless", "Serverless"),
    ("0.15", "Standard", "Standard", "Standard"),
])
def test_kserve_rules_upgrades_keep_the_recorded_mode_name(helm, mode_probe_chart, version, mode, recorded, expected):
    out = helm_tools.run_helm(["template", "x", str(mode_probe_chart), "--set-string", f"recorded={recorded}",
                               "--set-string", f"kserve.version={version}", "--set", f"kserve.deploymentMode={mode}"])
    annotation = yaml.safe_load(out)["data"]["mode"]
    assert annotation == expected
    line = kserve_line(version)
    if not recorded:
        assert RECORDED_MODE[line][annotation] == annotation
    assert LOGICAL_MODE[annotation] == mode


def test_kserve_rules_upgrade_to_the_other_mode_fails_with_the_fix(helm, mode_probe_chart):
    with pytest.raises(helm_tools.HelmError, match="runs in KServe mode Serverless, which cannot change in place"):
        helm_tools.run_helm(["template", "x", str(mode_probe_chart), "--set-string", "recorded=Serverless"])


# ---- Pod Security "restricted": the pods KServe and Knative build, not only the ones the chart writes --------

def built_pods(objs: list[dict]) -> list[tuple[str, str, dict]]:
    """(isvc, component, pod) as they run: KServe's storage initializer or modelcar added, and in Knative mode
    the port renamed and the queue-proxy added."""
    pods = []
    for isvc, component, pod in kserve_pods(objs):
        uri = isvc["spec"]["predictor"]["model"]["storageUri"]
        pod = apply_modelcar(pod) if uri.startswith("oci://") else apply_storage_initializer(pod)
        if LOGICAL_MODE[isvc["metadata"]["annotations"][MODE]] == "Knative":
            pod = apply_knative(pod)
        pods.append((isvc["metadata"]["name"], component, pod))
    return pods


@pytest.mark.parametrize("variant", VARIANTS)
def test_kserve_rules_a_restricted_namespace_gets_admissible_pods_or_a_refusal(render, variant):
    """Declared restricted, each variant either renders pods that the restricted level admits once KServe and
    Knative have added their containers, or fails at render time naming the cause."""
    restricted = {"podSecurityStandard": "restricted"}
    try:
        objs = render(variant_files(variant), restricted)
    except helm_tools.HelmError as exc:
        assert re.search(r"modelcar|storage initializer has no seccompProfile", str(exc)), exc
        violations = [v for _, _, pod in built_pods(render(variant_files(variant))) for v in restricted_violations(pod)]
        assert violations, "refused although every pod would be admitted"
        return
    for name, component, pod in built_pods(objs):
        assert restricted_violations(pod) == [], (name, component)


def test_kserve_rules_the_default_oci_repository_is_refused_in_a_restricted_namespace(render):
    with pytest.raises(helm_tools.HelmError, match="modelcar sidecar"):
        render(set_values={"podSecurityStandard": "restricted"})
    s3 = {"podSecurityStandard": "restricted", "modelRepository.storageUri": "s3://bucket/repo"}
    assert objects_of(render(set_values=s3), "InferenceService")


def test_kserve_rules_knative_in_a_restricted_namespace_needs_a_seccomp_profile_for_the_initializer(render):
    knative = [helm_tools.CHART / "ci" / "knative-values.yaml"]
    s3 = {"podSecurityStandard": "restricted", "modelRepository.storageUri": "s3://bucket/repo"}
    with pytest.raises(helm_tools.HelmError, match="kubernetes.podspec-securitycontext"):
        render(knative, s3)
    pods = built_pods(render(knative, {**s3, "kserve.knativeFeatures.podSecurityContext": True}))
    assert all(restricted_violations(pod) == [] for _, _, pod in pods)
    # Declaring that the cluster's ClusterStorageContainer carries the profile is the other way out.
    assert render(knative, {**s3, "kserve.storageInitializerSeccompProfile": True})


# ---- Knative: startupProbe, the renamed port ---------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_kserve_rules_every_main_container_has_a_startup_probe(renders, variant):
    """Triton's liveness budget is about 30 s; without a startupProbe a slow model load or a TensorRT engine
    build is killed in a loop. Knative admits the field since 1.15 (KNATIVE_CONTAINER_FIELDS)."""
    for isvc, component, pod in kserve_pods(renders[variant]):
        main = pod["spec"]["containers"][0]
        assert "startupProbe" in main, (isvc["metadata"]["name"], component)
        probe = main["startupProbe"]
        assert probe["periodSeconds"] * probe["failureThreshold"] >= 300


@pytest.mark.parametrize("variant", KNATIVE_VARIANTS)
def test_kserve_rules_knative_pod_monitors_name_the_port_knative_declares(renders, variant):
    # The gateway is a plain StatefulSet, not a Knative revision: its port keeps its own name.
    monitors = objects_of(helm_tools.without_gateway(renders[variant]), "PodMonitor")
    for monitor in monitors:
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            assert endpoint["port"] == KNATIVE_USER_PORT_NAME
    for _, _, pod in built_pods(renders[variant]):
        assert [p["name"] for p in pod["spec"]["containers"][0]["ports"]] == [KNATIVE_USER_PORT_NAME]


def test_kserve_rules_rules_render_only_with_the_monitors_they_read(renders, render):
    """Without PodMonitors every absent() alert would fire forever."""
    assert not objects_of(renders["knative-kserve-runtime"], "PrometheusRule")
    assert objects_of(renders["default"], "PrometheusRule")
    assert not objects_of(render(set_values={"monitoring.podMonitor.enabled": False}), "PrometheusRule")


# ---- Labels, rollouts, predictor host, runtime selection ------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_kserve_rules_no_release_version_reaches_the_pod_templates(renders, variant):
    assert KSERVE_COPIES_ISVC_LABELS_TO_PODS
    for isvc in objects_of(renders[variant], "InferenceService"):
        assert not VERSIONED_LABELS & isvc["metadata"]["labels"].keys()
        for component in ("predictor", "transformer"):
            assert not VERSIONED_LABELS & isvc["spec"][component]["labels"].keys()


def test_kserve_rules_a_chart_version_bump_leaves_the_inference_services_unchanged(helm, tmp_path):
    bumped = tmp_path / "duet"
    shutil.copytree(helm_tools.CHART, bumped)
    chart_yaml = bumped / "Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text().replace("version: 0.1.0", "version: 0.2.0")
                          .replace('appVersion: "0.1.0"', 'appVersion: "0.2.0"'))

    def isvcs(chart: Path) -> list[dict]:
        out = helm_tools.run_helm(["template", "duet", str(chart), "-n", "duet"])
        return [d for d in yaml.safe_load_all(out) if d and d["kind"] == "InferenceService"]

    assert isvcs(bumped) == isvcs(helm_tools.CHART)


@pytest.mark.parametrize("variant", VARIANTS)
def test_kserve_rules_gpu_predictors_roll_without_a_spare_gpu(renders, variant):
    values = values_of(variant)
    for isvc in objects_of(renders[variant], "InferenceService"):
        predictor = isvc["spec"]["predictor"]
        resources = predictor["model"]["resources"]
        gpu = "nvidia.com/gpu" in resources.get("limits", {}) or "nvidia.com/gpu" in resources.get("requests", {})
        if values["kserve"]["deploymentMode"] == "Knative":
            assert "deploymentStrategy" not in predictor, "only KServe's raw reconciler reads it"
        elif values["triton"].get("deploymentStrategy"):
            assert predictor["deploymentStrategy"] == values["triton"]["deploymentStrategy"]
        elif gpu:
            assert predictor["deploymentStrategy"] == GPU_ROLLOUT, f"KServe's default {KSERVE_DEFAULT_ROLLOUT}"
        else:
            assert "deploymentStrategy" not in predictor


@pytest.mark.parametrize("variant", VARIANTS)
def test_kserve_rules_predictor_host_is_name_and_namespace_only(renders, variant):
    for isvc in objects_of(renders[variant], "InferenceService"):
        host = flag_args(transformer_container(isvc)["args"])["--predictor_host"]
        assert PREDICTOR_HOST_SUFFIX_FORBIDDEN not in host
        assert host == f"{isvc['metadata']['name']}-predictor.{isvc['metadata']['namespace']}:{SERVICE_PORT}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_kserve_rules_the_namespaced_runtime_selects_no_other_inference_service(renders, variant):
    assert AUTOSELECT_CAPTURES_OTHERS
    for runtime in objects_of(renders[variant], "ServingRuntime"):
        assert not any(f.get("autoSelect") for f in runtime["spec"]["supportedModelFormats"])
    for isvc in objects_of(renders[variant], "InferenceService"):
        assert isvc["spec"]["predictor"]["model"]["runtime"], "without autoSelect each must name its runtime"


# ---- KEDA ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_kserve_rules_kserve_generated_triggers_are_sums_it_can_average(renders, variant):
    """KServe's ScaledObject makes every trigger an AverageValue: desired = ceil(value / target) whatever the
    current count. Only a sum over replicas means that; a per-request average (queue time) does not."""
    assert KSERVE_KEDA_METRIC_TYPE == KEDA_DEFAULT_METRIC_TYPE == "AverageValue"
    for isvc in objects_of(renders[variant], "InferenceService"):
        for component in ("predictor", "transformer"):
            for metric in isvc["spec"][component].get("autoScaling", {}).get("metrics", []):
                if metric["type"] == "External":
                    assert metric["external"]["metric"]["query"].startswith("sum("), metric


def test_kserve_rules_chart_scaled_objects_never_share_kserves_name(renders):
    for scaled in objects_of(renders["keda-chart-scaledobject"], "ScaledObject"):
        target = scaled["spec"]["scaleTargetRef"]["name"]
        isvc, component = target.rsplit("-", 1)
        assert scaled["metadata"]["name"] != KSERVE_AUTOSCALER_NAME.format(isvc=isvc, component=component)


def test_kserve_rules_fallback_behavior_is_optional_for_keda_2_16(render):
    assert KEDA_FIELD_MIN_VERSION["fallback.behavior"] == "2.17"
    keda = [helm_tools.CHART / "ci" / "keda-chart-scaledobject-values.yaml"]
    without = render(keda, {"autoscaling.keda.fallback.behavior": ""})
    assert all("behavior" not in s["spec"]["fallback"] for s in objects_of(without, "ScaledObject"))


@pytest.fixture(scope="module")
def probe_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """duet's helpers plus one template that calls a helper with objects given as values: `lookup`, which
    supplies them on a real install, is empty without a cluster."""
    chart = tmp_path_factory.mktemp("probe")
    (chart / "templates").mkdir()
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: duet\nversion: 0.1.0\n")
    shutil.copy(helm_tools.CHART / "values.yaml", chart / "values.yaml")
    shutil.copy(helm_tools.CHART / "templates" / "_helpers.tpl", chart / "templates" / "_helpers.tpl")
    (chart / "templates" / "probe.yaml").write_text(
        "{{- include \"duet.checkStaleAutoscalers\" (dict \"root\" $ \"name\" \"duet-sentiment-predictor\" "
        "\"scaledObject\" (.Values.existing.scaledObject | default dict) "
        "\"hpa\" (.Values.existing.hpa | default dict)) }}\n"
        "{{- include \"duet.checkPodSecurity\" (dict \"root\" $ "
        "\"namespace\" (.Values.existing.namespace | default dict)) }}\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\ndata:\n"
        "  level: {{ include \"duet.podSecurityLevel\" (dict \"root\" $ \"namespace\" "
        "(.Values.existing.namespace | default dict)) | quote }}\n")
    return chart


def probe(chart: Path, existing: dict, *args: str) -> dict:
    values = chart / "existing.yaml"
    values.write_text(yaml.safe_dump({"existing": existing}))
    return yaml.safe_load(helm_tools.run_helm(["template", "duet", str(chart), "-n", "duet", "-f", str(values),
                                               *args]))


def kserve_owned(kind: str) -> dict:
    return {"kind": kind, "metadata": {"name": "duet-sentiment-predictor",
                                       "ownerReferences": [{"kind": "InferenceService", "name": "duet-sentiment"}]}}


@pytest.mark.parametrize(("mode_args", "existing", "refused"), [
    # KEDA (KServe-owned) -> HPA: KServe's ScaledObject stays behind.
    (["--set", "autoscaling.mode=hpa"], {"scaledObject": kserve_owned("ScaledObject")}, "scaledobject"),
    # KEDA (KServe-owned) -> chart-owned ScaledObjects: two ScaledObjects on one Deployment.
    (["--set", "autoscaling.keda.scaledObject=chart"], {"scaledObject": kserve_owned("ScaledObject")}, "scaledobject"),
    # HPA -> KEDA: KServe's HPA and KEDA's would both set the replicas.
    ([], {"hpa": kserve_owned("HorizontalPodAutoscaler")}, "hpa"),
    (["--set", "autoscaling.mode=none"], {"hpa": kserve_owned("HorizontalPodAutoscaler")}, "hpa"),
    # An earlier chart's own ScaledObject under KServe's name blocks the renamed one.
    (["--set", "autoscaling.keda.scaledObject=chart"],
     {"scaledObject": {"kind": "ScaledObject", "metadata": {"name": "duet-sentiment-predictor",
                                                             "labels": {"app.kubernetes.io/part-of": "duet"}}}},
     "scaledobject"),
    # What the mode itself owns is fine.
    ([], {"scaledObject": kserve_owned("ScaledObject")}, None),
    (["--set", "autoscaling.mode=hpa"], {"hpa": kserve_owned("HorizontalPodAutoscaler")}, None),
])
def test_kserve_rules_autoscalers_kserve_left_behind_are_refused(helm, probe_chart, mode_args, existing, refused):
    assert not KSERVE_DELETES_AUTOSCALER_ON_CLASS_CHANGE
    if refused is None:
        probe(probe_chart, existing, *mode_args)
        return
    with pytest.raises(helm_tools.HelmError, match=f"kubectl -n duet delete {refused} duet-sentiment-predictor"):
        probe(probe_chart, existing, *mode_args)


def test_kserve_rules_the_namespace_label_sets_the_pod_security_level(helm, probe_chart):
    restricted = {"namespace": {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}}
    with pytest.raises(helm_tools.HelmError, match="modelcar sidecar"):
        probe(probe_chart, restricted)
    s3 = ("--set", "modelRepository.storageUri=s3://bucket/repo")
    assert probe(probe_chart, restricted, *s3)["data"]["level"] == "restricted"
    assert probe(probe_chart, {})["data"]["level"] == ""
    assert probe(probe_chart, restricted, "--set", "podSecurityStandard=baseline")["data"]["level"] == "baseline"
