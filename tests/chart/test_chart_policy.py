"""Policy assertions on every pod the chart makes KServe run, in every variant: restricted security context,
resources set, probes present, GPU only on the predictor, writable emptyDirs where the code writes, and
NetworkPolicy / PodDisruptionBudget / PodMonitor selectors that match the pods they are meant for."""

from __future__ import annotations

import pytest
from chart_support import VARIANTS, objects_of, pod_specs, variant_files
from kserve_rules import (
    KSERVE_TRITON_RUNTIME_CONTAINER,
    TRITON_DEFAULT_METRICS_PORT,
    knative_port_names,
    merged_values,
)

GPU = "nvidia.com/gpu"


def matches(selector: dict, labels: dict) -> bool:
    """Does a matchLabels selector select these labels? (The chart uses matchLabels only.)"""
    assert set(selector) <= {"matchLabels"}, f"unexpected selector form {selector}"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def without_gateway(objs: list[dict]) -> list[dict]:
    """The objects that are not the DICOM gateway's (test_gateway_chart.py checks those)."""
    return [o for o in objs if o["metadata"]["labels"].get("app.kubernetes.io/component") != "gateway"]


def component_pods(objs: list[dict]) -> list[tuple[str, str, dict]]:
    """(model, component, pod labels) of every InferenceService component."""
    return [(spec["labels"]["duet/model"], component, spec["labels"]) for _, component, spec, _ in pod_specs(objs)]


def container_ports(objs: list[dict], component: str, model: str) -> dict[str, int]:
    """Container ports (name -> number) of a component's main container as the pod runs it: in Knative mode
    under the name Knative gives the one port (kserve_rules.knative_port_names)."""
    if component == "transformer":
        isvc = next(o for o in objects_of(objs, "InferenceService") if o["metadata"]["labels"]["duet/model"] == model)
        ports = isvc["spec"]["transformer"]["containers"][0]["ports"]
    else:
        runtime = objects_of(objs, "ServingRuntime")
        ports = runtime[0]["spec"]["containers"][0]["ports"] if runtime else []
    isvcs = objects_of(objs, "InferenceService")
    if isvcs and isvcs[0]["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] in ("Knative", "Serverless"):
        ports = knative_port_names(ports)
    return {p["name"]: p["containerPort"] for p in ports}


def listening_ports(objs: list[dict], component: str, model: str) -> set[int]:
    """Ports the component's server listens on: the transformer's declared ports, Triton's --*-port flags
    (in Knative mode Triton listens on ports it may not declare)."""
    if component == "transformer":
        return set(container_ports(objs, component, model).values())
    runtimes = objects_of(objs, "ServingRuntime")
    # Without the chart's runtime the predictors run KServe's own kserve-tritonserver.
    args = runtimes[0]["spec"]["containers"][0]["args"] if runtimes else KSERVE_TRITON_RUNTIME_CONTAINER["args"]
    flags = {a.split("=", 1)[0]: int(a.split("=", 1)[1]) for a in args
             if a.split("=", 1)[0] in ("--http-port", "--grpc-port", "--metrics-port")}
    return set(flags.values()) | ({TRITON_DEFAULT_METRICS_PORT} if "--metrics-port" not in flags else set())


@pytest.mark.parametrize("variant", VARIANTS)
def test_pods_run_with_the_restricted_security_profile(renders, variant):
    for name, component, spec, containers in pod_specs(renders[variant]):
        # Knative without kubernetes.podspec-securitycontext admits no pod-level context: the containers' own
        # contexts below carry non-root and seccomp alone.
        pod = spec.get("securityContext")
        assert pod is not None or variant.startswith("knative"), (name, component)
        if pod is not None:
            assert pod["runAsNonRoot"] is True, (name, component)
            assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for container in containers:
            ctx = container["securityContext"]
            assert ctx["allowPrivilegeEscalation"] is False
            assert ctx["readOnlyRootFilesystem"] is True
            assert ctx["capabilities"] == {"drop": ["ALL"]}
            assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] > 0
            assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    for runtime in objects_of(renders[variant], "ServingRuntime"):
        assert runtime["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_container_sets_cpu_and_memory_requests_and_limits(renders, variant):
    for name, component, _, containers in pod_specs(renders[variant]):
        for container in containers:
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), (name, component, kind)


@pytest.mark.parametrize("variant", VARIANTS)
def test_main_containers_have_liveness_and_readiness_probes_on_v2_health(renders, variant):
    for name, component, spec, _ in pod_specs(renders[variant]):
        main = spec["model"] if component == "predictor" else spec["containers"][0]
        for probe in ("livenessProbe", "readinessProbe"):
            assert probe in main, (name, component, probe)
        http = main["readinessProbe"].get("httpGet")
        if http:
            # The transformer's pod readiness leaves the predictor out (transformer.readinessIncludesPredictor):
            # /v2/health/live answers once its models have loaded.
            assert http["path"] == ("/v2/health/ready" if component == "predictor" else "/v2/health/live")
            assert main["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
        else:  # Knative predictor on the chart's runtime: only the one declared (gRPC) port may be probed
            assert values_of(variant)["kserve"]["deploymentMode"] == "Knative" and component == "predictor"
            assert main["readinessProbe"]["tcpSocket"]["port"] == 9000


@pytest.mark.parametrize("variant", VARIANTS)
def test_gpu_is_requested_only_by_the_predictor(renders, variant):
    for name, component, _, containers in pod_specs(renders[variant]):
        for container in containers:
            resources = container["resources"]
            has_gpu = GPU in resources["requests"] or GPU in resources["limits"]
            if component == "transformer":
                assert not has_gpu, (name, container["name"])
            elif variant != "dev":
                assert resources["requests"][GPU] == resources["limits"][GPU] == "1", name
            else:
                assert not has_gpu, "the dev profile runs on CPU-only clusters"
    if variant == "dev":
        for _, _, spec, _ in pod_specs(renders[variant]):
            assert not any(key.startswith(GPU) for key in spec.get("nodeSelector", {}))
    for runtime in objects_of(renders[variant], "ServingRuntime"):
        resources = runtime["spec"]["containers"][0]["resources"]
        assert GPU not in resources["requests"] and GPU not in resources["limits"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_writable_paths_are_emptydirs(renders, variant):
    for name, component, spec, containers in pod_specs(renders[variant]):
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        main = containers[0]
        mounts = {m["mountPath"]: m["name"] for m in main.get("volumeMounts", [])}
        assert "emptyDir" in volumes[mounts["/tmp"]], (name, component)
        if component == "transformer":
            env = {e["name"]: e.get("value") for e in main["env"]}
            assert "emptyDir" in volumes[mounts[env["PROMETHEUS_MULTIPROC_DIR"]]]


@pytest.mark.parametrize("variant", VARIANTS)
def test_network_policies_select_the_pods_they_protect(renders, variant):
    objs = renders[variant]
    policies = objects_of(without_gateway(objs), "NetworkPolicy")  # the gateway's: test_gateway_chart.py
    pods = component_pods(objs)
    if variant == "minimal":
        assert not policies
        return
    assert len(policies) == 2 * len({m for m, _, _ in pods})
    for policy in policies:
        spec = policy["spec"]
        assert spec["policyTypes"] == ["Ingress"]
        # One model's component: its canary's pods (Standard mode) are the same component and share the policy.
        selected = sorted({(m, c) for m, c, labels in pods if matches(spec["podSelector"], labels)})
        assert len(selected) == 1, f"{policy['metadata']['name']} selects {selected}"
        model, component = selected[0]
        ports = listening_ports(objs, component, model)
        for rule in spec["ingress"]:
            for port in rule.get("ports", []):
                assert port["port"] in ports, (policy["metadata"]["name"], port)
            for peer in rule["from"]:
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    # The only pod-to-pod rule: the same model's transformer may call its predictor.
                    callers = sorted({(m, c) for m, c, labels in pods if matches(peer["podSelector"], labels)})
                    assert component == "predictor" and callers == [(model, "transformer")]


def test_only_the_transformer_reaches_the_predictor_in_standard_mode(renders):
    objs = renders["default"]
    for policy in objects_of(objs, "NetworkPolicy"):
        if policy["metadata"]["labels"]["app.kubernetes.io/component"] != "predictor":
            continue
        rules = policy["spec"]["ingress"]
        inference = [r for r in rules if any(p["port"] in (8080, 9000) for p in r["ports"])]
        assert len(inference) == 1
        assert [list(peer) for peer in inference[0]["from"]] == [["podSelector"]]
        metrics = [r for r in rules if r["ports"] == [{"protocol": "TCP", "port": 8002}]]
        assert metrics and "namespaceSelector" in metrics[0]["from"][0]


def test_only_the_ingress_and_prometheus_reach_the_transformer(renders):
    for policy in objects_of(renders["default"], "NetworkPolicy"):
        if policy["metadata"]["labels"]["app.kubernetes.io/component"] != "transformer":
            continue
        peers = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
        assert all("namespaceSelector" in peer for peer in peers)
        selected_namespaces = [peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                               for peer in peers]
        assert selected_namespaces == ["istio-system", "monitoring"]


def values_of(variant: str) -> dict:
    return merged_values(variant_files(variant))


@pytest.mark.parametrize("variant", VARIANTS)
def test_disruption_budgets_exist_exactly_for_components_that_may_run_several_pods(renders, variant):
    """maxReplicas, not minReplicas: KEDA and the HPA scale a component with minReplicas 1 out, and those pods
    need the budget too; maxUnavailable 1 never blocks draining a single pod."""
    objs = renders[variant]
    budgets = objects_of(objs, "PodDisruptionBudget")
    enabled = values_of(variant)["podDisruptionBudget"]["enabled"]
    expected = {(spec["labels"]["duet/model"], component) for _, component, spec, _ in pod_specs(objs)
                if spec["maxReplicas"] > 1 and enabled}
    covered = set()
    for budget in without_gateway(budgets):
        selected = sorted({(m, c) for m, c, labels in component_pods(objs)
                           if matches(budget["spec"]["selector"], labels)})
        assert len(selected) == 1
        covered.add(selected[0])
        assert budget["spec"]["maxUnavailable"] == 1
    assert covered == expected
    if variant == "ha":
        assert len(expected) == 4


@pytest.mark.parametrize("variant", VARIANTS)
def test_pod_monitors_select_their_component_and_scrape_a_declared_port(renders, variant):
    objs = renders[variant]
    for monitor in objects_of(without_gateway(objs), "PodMonitor"):
        selected = {(m, c) for m, c, labels in component_pods(objs) if matches(monitor["spec"]["selector"], labels)}
        components = {c for _, c in selected}
        assert len(components) == 1 and len(selected) == 2, monitor["metadata"]["name"]
        component = components.pop()
        for model, _ in selected:
            ports = container_ports(objs, component, model)
            for endpoint in monitor["spec"]["podMetricsEndpoints"]:
                assert endpoint["port"] in ports
        if component == "predictor" and variant == "knative":
            relabel = monitor["spec"]["podMetricsEndpoints"][0]["relabelings"][0]
            assert relabel["targetLabel"] == "__address__" and relabel["replacement"].endswith(":8002")


def test_images_are_pinned_by_digest_when_digests_are_given(renders):
    for _, _, _, containers in pod_specs(renders["ha"]):
        for container in containers:
            assert "@sha256:" in container.get("image", "@sha256:"), container["name"]
    runtime = objects_of(renders["ha"], "ServingRuntime")[0]
    assert "@sha256:" in runtime["spec"]["containers"][0]["image"]
