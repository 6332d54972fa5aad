"""The DICOM gateway in charts/duet, rendered by the real Helm engine in every variant: a StatefulSet with a spool
volume per replica and the restricted security profile, Services for DIMSE (pinned by client address) and HTTP,
NetworkPolicies that admit only the named senders and let the gateway reach exactly the mammography service,
its DNS and the result destinations, a PodMonitor on a declared port, a disruption budget above one replica,
DICOM TLS from a Secret, its alerts only where it is installed, and values checked before anything is applied."""

from __future__ import annotations

import os
import re

import chart_support as helm_tools
import pytest
import yaml
from chart_support import CHART, GATEWAY_SERIES, REPO, VARIANTS, objects_of, variant_files

WITH_GATEWAY = list(VARIANTS)
SPOOL_DIR = "/var/lib/duet-gateway"


def gateway_objects(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objects_of(objs, kind)
            if o["metadata"]["labels"].get("app.kubernetes.io/component") == "gateway"]


def statefulset(objs: list[dict]) -> dict:
    (sts,) = objects_of(objs, "StatefulSet")
    return sts


def container(objs: list[dict]) -> dict:
    (main,) = statefulset(objs)["spec"]["template"]["spec"]["containers"]
    return main


def env_of(objs: list[dict]) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in container(objs)["env"]}


def ports_of(objs: list[dict]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container(objs)["ports"]}


def pod_labels(objs: list[dict]) -> dict:
    return statefulset(objs)["spec"]["template"]["metadata"]["labels"]


def matches(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels"}, f"unexpected selector form {selector}"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def isvc_component_labels(objs: list[dict], model: str, component: str) -> dict:
    isvc = next(o for o in objects_of(objs, "InferenceService") if o["metadata"]["labels"]["duet/model"] == model)
    return isvc["spec"][component]["labels"]


def transformer_http_port(objs: list[dict]) -> int:
    isvc = next(o for o in objects_of(objs, "InferenceService")
                if o["metadata"]["labels"]["duet/model"] == "mammography")
    ports = {p["name"]: p["containerPort"] for p in isvc["spec"]["transformer"]["containers"][0]["ports"]}
    return ports["http1"]


# ---- Rendered in every variant ----------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_gateway_renders_in_every_variant(renders, variant):
    """minimal serves no mammography model: its gateway sends studies to another release's."""
    objs = renders[variant]
    kinds = {o["kind"] for o in objs if o["metadata"]["labels"].get("app.kubernetes.io/component") == "gateway"}
    assert {"StatefulSet", "Service"} <= kinds
    services = {s["metadata"]["name"] for s in gateway_objects(objs, "Service")}
    assert services == {"duet-gateway-dicom", "duet-gateway-http", "duet-gateway-pods"}


def test_default_render_has_the_gateways_objects(renders):
    counts: dict[str, int] = {}
    for obj in renders["default"]:
        if obj["metadata"]["labels"].get("app.kubernetes.io/component") == "gateway":
            counts[obj["kind"]] = counts.get(obj["kind"], 0) + 1
    assert counts == {"StatefulSet": 1, "Service": 3, "NetworkPolicy": 2, "PodMonitor": 1}


def test_gateway_without_mammography_needs_an_inference_url(render):
    minimal = CHART / "ci" / "minimal-values.yaml"
    with pytest.raises(helm_tools.HelmError, match="gateway.enabled needs models.mammography.enabled"):
        render([minimal], {"gateway.enabled": True, "gateway.inference.url": ""})
    elsewhere = "http://mammography.shared-models.svc.cluster.local"
    objs = render([minimal], {"gateway.enabled": True, "gateway.inference.url": elsewhere})
    assert env_of(objs)["DUET_GATEWAY_INFERENCE_URL"] == elsewhere


# ---- The workload ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", WITH_GATEWAY)
def test_gateway_pod_runs_with_the_restricted_security_profile(renders, variant):
    pod = statefulset(renders[variant])["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["fsGroup"] == 1000, "the spool volume must be writable by uid 1000"
    assert pod["automountServiceAccountToken"] is False
    ctx = container(renders[variant])["securityContext"]
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == 1000
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    resources = container(renders[variant])["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind])


@pytest.mark.parametrize("variant", WITH_GATEWAY)
def test_each_replica_spools_to_its_own_volume_and_writes_nowhere_else(renders, variant):
    objs = renders[variant]
    sts = statefulset(objs)
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["mountPath"]: m["name"] for m in container(objs)["volumeMounts"]}
    assert mounts[SPOOL_DIR] == claim["metadata"]["name"]
    assert env_of(objs)["DUET_GATEWAY_SPOOL_DIR"] == SPOOL_DIR
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert claim["metadata"]["name"] not in volumes, "the spool must come from the claim template, not a pod volume"
    # Undelivered studies survive a scale-down and an uninstall unless the operator opts out.
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenScaled": "Retain", "whenDeleted": "Retain"}
    assert sts["spec"]["serviceName"] == "duet-gateway-pods"


@pytest.mark.parametrize("variant", WITH_GATEWAY)
def test_probes_use_the_health_endpoints_on_the_declared_http_port(renders, variant):
    main = container(renders[variant])
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert main["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert ports_of(renders[variant])["http"] == int(env_of(renders[variant])["DUET_GATEWAY_HTTP_PORT"])
    assert ports_of(renders[variant])["dicom"] == int(env_of(renders[variant])["DUET_GATEWAY_PORT"])


def test_settings_come_from_values(render):
    objs = render(set_values={"gateway.aeTitle": "DUETAI", "gateway.allowedCallingAEs": "{MG1,PACS@10.1.2.3}",
                              "gateway.destinations": "{PACS@pacs.example:104,https://dicomweb.example/dicom-web}",
                              "gateway.stableSeconds": 45, "gateway.secondaryCapture": True,
                              "gateway.maxAssociations": 4, "gateway.export.maxAttempts": 7})
    env = env_of(objs)
    assert env["DUET_GATEWAY_AE_TITLE"] == "DUETAI"
    assert env["DUET_GATEWAY_ALLOWED_CALLING_AES"] == "MG1,PACS@10.1.2.3"
    assert env["DUET_GATEWAY_DESTINATIONS"] == "PACS@pacs.example:104,https://dicomweb.example/dicom-web"
    assert env["DUET_GATEWAY_STABLE_SECONDS"] == "45"
    assert env["DUET_GATEWAY_SECONDARY_CAPTURE"] == "true"
    assert env["DUET_GATEWAY_MAX_ASSOCIATIONS"] == "4"
    assert env["DUET_GATEWAY_EXPORT_MAX_ATTEMPTS"] == "7"
    assert env["DUET_GATEWAY_SPOOL_QUOTA_BYTES"] == "21474836480", "large integers must not turn into 2.1e+10"
    assert env["DUET_GATEWAY_MAX_STUDY_BYTES"] == "1073741824"
    assert env["DUET_GATEWAY_HOST"] == "0.0.0.0"


def test_every_variable_the_chart_sets_is_a_gateway_setting(renders):
    settings = pytest.importorskip("gateway.settings", reason="the gateway package is not in this checkout")
    fields = set(settings.GatewaySettings.model_fields)
    for variant in WITH_GATEWAY:
        for name in env_of(renders[variant]):
            assert name.startswith("DUET_GATEWAY_"), name
            assert name.removeprefix("DUET_GATEWAY_").lower() in fields, f"{variant}: {name} is no gateway setting"


@pytest.mark.parametrize("variant", WITH_GATEWAY)
def test_the_gateway_reads_the_rendered_environment_as_the_values_meant(renders, variant, monkeypatch):
    """The rendered variables, parsed by the gateway's own settings class (pydantic-settings), as in the pod."""
    settings = pytest.importorskip("gateway.settings", reason="the gateway package is not in this checkout")
    for name in [n for n in os.environ if n.startswith("DUET_GATEWAY_")]:
        monkeypatch.delenv(name)
    for name, value in env_of(renders[variant]).items():
        if value is not None:  # valueFrom entries (a Secret) are not rendered values
            monkeypatch.setenv(name, value)
    parsed = settings.GatewaySettings()
    values = yaml.safe_load((CHART / "values.yaml").read_text())["gateway"]
    overrides = yaml.safe_load(variant_files(variant)[0].read_text()).get("gateway", {}) if variant != "default" else {}
    values = {**values, **overrides}
    assert parsed.ae_title == values["aeTitle"]
    assert parsed.allowed_calling_aes == values["allowedCallingAEs"]
    assert parsed.destinations == values["destinations"]
    assert parsed.allow_any_calling_ae is values["allowAnyCallingAE"]
    assert parsed.stable_seconds == values["stableSeconds"]
    assert parsed.spool_quota_bytes == values.get("spool", {}).get("quotaBytes", 21474836480)
    assert str(parsed.spool_dir) == SPOOL_DIR
    assert parsed.inference_url == env_of(renders[variant])["DUET_GATEWAY_INFERENCE_URL"]
    tls = values["tls"]
    assert parsed.tls_port == (tls.get("port", 2762) if tls.get("enabled") else None)


def test_inference_url_is_the_mammography_inference_service_of_the_release(renders, render):
    assert env_of(renders["default"])["DUET_GATEWAY_INFERENCE_URL"] == (
        "http://duet-mammography-transformer.duet:80")
    assert env_of(renders["default"])["DUET_GATEWAY_INFERENCE_MODEL"] == "mammography"
    # Knative: the InferenceService's cluster-local address, served by Knative's local gateway.
    assert env_of(renders["knative"])["DUET_GATEWAY_INFERENCE_URL"] == (
        "http://duet-mammography.duet.svc.cluster.local")
    # The host follows the InferenceService's name (release, namespace), as the predictor host does.
    objs = render(release="radiology", namespace="imaging")
    (isvc,) = [o for o in objects_of(objs, "InferenceService")
               if o["metadata"]["labels"]["duet/model"] == "mammography"]
    assert env_of(objs)["DUET_GATEWAY_INFERENCE_URL"] == (
        f"http://{isvc['metadata']['name']}-transformer.imaging:80")


def test_inference_token_and_host_header_are_optional(renders, render):
    env = env_of(renders["default"])
    assert "DUET_GATEWAY_INFERENCE_TOKEN" not in env and "DUET_GATEWAY_INFERENCE_HOST_HEADER" not in env
    objs = render(set_values={"gateway.inference.tokenSecret.name": "mammo-token",
                              "gateway.inference.hostHeader": "mammography.example.org"})
    token = next(e for e in container(objs)["env"] if e["name"] == "DUET_GATEWAY_INFERENCE_TOKEN")
    assert token["valueFrom"] == {"secretKeyRef": {"name": "mammo-token", "key": "token"}}
    assert env_of(objs)["DUET_GATEWAY_INFERENCE_HOST_HEADER"] == "mammography.example.org"


# ---- Services --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", WITH_GATEWAY)
def test_services_select_the_gateway_pods_and_target_declared_ports(renders, variant):
    objs = renders[variant]
    ports = ports_of(objs)
    for service in gateway_objects(objs, "Service"):
        assert matches({"matchLabels": service["spec"]["selector"]}, pod_labels(objs))
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, (service["metadata"]["name"], port)
    dicom = next(s for s in gateway_objects(objs, "Service") if s["metadata"]["name"].endswith("-dicom"))
    # One sender's associations land on one replica, so a study split over associations meets in one spool.
    assert dicom["spec"]["sessionAffinity"] == "ClientIP"
    assert dicom["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"] >= 3600
    headless = next(s for s in gateway_objects(objs, "Service") if s["metadata"]["name"].endswith("-pods"))
    assert headless["spec"]["clusterIP"] == "None"
    assert statefulset(objs)["spec"]["serviceName"] == headless["metadata"]["name"]


def test_a_load_balancer_keeps_the_senders_address_and_range(renders):
    dicom = next(s for s in gateway_objects(renders["ha"], "Service") if s["metadata"]["name"].endswith("-dicom"))
    assert dicom["spec"]["type"] == "LoadBalancer"
    # SNAT to a node address would defeat the AE@ip allow-list and the ClientIP affinity.
    assert dicom["spec"]["externalTrafficPolicy"] == "Local"
    assert dicom["spec"]["loadBalancerSourceRanges"] == ["10.20.0.0/16"]
    default = next(s for s in gateway_objects(renders["default"], "Service")
                   if s["metadata"]["name"].endswith("-dicom"))
    assert "externalTrafficPolicy" not in default["spec"], "a ClusterIP Service takes no externalTrafficPolicy"


def test_an_exposed_http_service_keeps_the_senders_address(render):
    objs = render(set_values={"gateway.service.httpType": "NodePort"})
    http = next(s for s in gateway_objects(objs, "Service") if s["metadata"]["name"].endswith("-http"))
    assert http["spec"]["type"] == "NodePort" and http["spec"]["externalTrafficPolicy"] == "Local"


# ---- TLS -------------------------------------------------------------------------------------------------------

def test_tls_port_certificates_and_client_verification_come_from_the_secret(renders, render):
    objs = renders["ha"]
    env = env_of(objs)
    assert ports_of(objs)["dicom-tls"] == int(env["DUET_GATEWAY_TLS_PORT"]) == 2762
    mounts = {m["name"]: m for m in container(objs)["volumeMounts"]}
    volumes = {v["name"]: v for v in statefulset(objs)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "duet-gateway-tls"
    assert mounts["tls"]["readOnly"] is True
    directory = mounts["tls"]["mountPath"]
    assert env["DUET_GATEWAY_TLS_CERT_FILE"] == f"{directory}/tls.crt"
    assert env["DUET_GATEWAY_TLS_KEY_FILE"] == f"{directory}/tls.key"
    assert env["DUET_GATEWAY_TLS_CA_FILE"] == f"{directory}/ca.crt"
    dicom = next(s for s in gateway_objects(objs, "Service") if s["metadata"]["name"].endswith("-dicom"))
    assert {p["name"]: p["port"] for p in dicom["spec"]["ports"]} == {"dicom": 11112, "dicom-tls": 2762}
    # Without TLS: no port, no files; with TLS but no client verification: no CA.
    assert not any(name.startswith("DUET_GATEWAY_TLS") for name in env_of(renders["default"]))
    assert "dicom-tls" not in ports_of(renders["default"])
    no_clients = render(set_values={"gateway.tls.enabled": True, "gateway.tls.secretName": "tls",
                                    "gateway.tls.verifyClients": False})
    assert "DUET_GATEWAY_TLS_CA_FILE" not in env_of(no_clients)
    assert "DUET_GATEWAY_TLS_CERT_FILE" in env_of(no_clients)


@pytest.mark.parametrize(("size", "quota", "refused"), [
    ("25Gi", 21474836480, False), ("20Gi", 21474836480, True), ("21G", 21474836480, True),
    ("22G", 21474836480, False), ("512Mi", 536870912, True), ("1Ti", 1099511627775, False)])
def test_the_spool_quota_must_fit_in_the_volume(render, size, quota, refused):
    values = {"gateway.spool.size": size, "gateway.spool.quotaBytes": quota}
    if refused:
        with pytest.raises(helm_tools.HelmError, match="must be below the spool volume gateway.spool.size"):
            render(set_values=values)
    else:
        assert env_of(render(set_values=values))["DUET_GATEWAY_SPOOL_QUOTA_BYTES"] == str(quota)


def test_tls_without_a_secret_is_refused(render):
    with pytest.raises(helm_tools.HelmError, match="gateway.tls.enabled needs gateway.tls.secretName"):
        render(set_values={"gateway.tls.enabled": True})


# ---- NetworkPolicies -------------------------------------------------------------------------------------------

def gateway_policy(objs: list[dict]) -> dict:
    return next(p for p in gateway_objects(objs, "NetworkPolicy") if p["metadata"]["name"] == "duet-gateway")


@pytest.mark.parametrize("variant", [v for v in WITH_GATEWAY if v != "minimal"])
def test_gateway_policy_selects_the_gateway_pods_and_opens_only_its_ports(renders, variant):
    objs = renders[variant]
    policy = gateway_policy(objs)["spec"]
    assert matches(policy["podSelector"], pod_labels(objs))
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    declared = set(ports_of(objs).values())
    for rule in policy["ingress"]:
        for port in rule["ports"]:
            assert port["port"] in declared


def test_dimse_is_open_only_to_the_allowed_ranges(renders, render):
    default = gateway_policy(renders["default"])["spec"]["ingress"]
    dimse_rules = [r for r in default if any(p["port"] == 11112 for p in r["ports"])]
    assert not dimse_rules, "no sender is allowed until gateway.networkPolicy names one"
    ha = gateway_policy(renders["ha"])["spec"]["ingress"]
    (dimse,) = [r for r in ha if any(p["port"] == 11112 for p in r["ports"])]
    assert dimse["from"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
    assert {p["port"] for p in dimse["ports"]} == {11112, 2762, 8090}
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "pacs"}}}
    objs = render(set_values={"gateway.networkPolicy.dimsePeers[0].namespaceSelector.matchLabels"
                              ".kubernetes\\.io/metadata\\.name": "pacs"})
    (dimse,) = [r for r in gateway_policy(objs)["spec"]["ingress"] if any(p["port"] == 11112 for p in r["ports"])]
    assert dimse["from"] == [peer]
    # Prometheus and the ingress reach only the HTTP port.
    for rule in default:
        assert [p["port"] for p in rule["ports"]] == [8090]


def test_gateway_reaches_the_mammography_transformer_and_nothing_else_in_the_cluster(renders):
    objs = renders["default"]
    egress = gateway_policy(objs)["spec"]["egress"]
    dns = [r for r in egress if {p["port"] for p in r["ports"]} == {53}]
    assert dns and {p["protocol"] for p in dns[0]["ports"]} == {"UDP", "TCP"}
    (inference,) = [r for r in egress if "to" in r]
    (peer,) = inference["to"]
    assert matches(peer["podSelector"], isvc_component_labels(objs, "mammography", "transformer"))
    assert not matches(peer["podSelector"], isvc_component_labels(objs, "mammography", "predictor"))
    assert not matches(peer["podSelector"], isvc_component_labels(objs, "sentiment", "transformer"))
    assert [p["port"] for p in inference["ports"]] == [transformer_http_port(objs)]
    assert len(egress) == 2, "no destinations configured: no other egress"


def test_the_mammography_transformer_admits_the_gateway(renders):
    objs = renders["default"]
    (policy,) = [p for p in gateway_objects(objs, "NetworkPolicy") if p["metadata"]["name"] != "duet-gateway"]
    spec = policy["spec"]
    assert matches(spec["podSelector"], isvc_component_labels(objs, "mammography", "transformer"))
    assert not matches(spec["podSelector"], isvc_component_labels(objs, "sentiment", "transformer"))
    (rule,) = spec["ingress"]
    assert [matches(peer["podSelector"], pod_labels(objs)) for peer in rule["from"]] == [True]
    assert [p["port"] for p in rule["ports"]] == [transformer_http_port(objs)]


def test_knative_mode_goes_through_knatives_gateways(renders):
    objs = renders["knative"]
    assert [p["metadata"]["name"] for p in gateway_objects(objs, "NetworkPolicy")] == ["duet-gateway"]
    (inference,) = [r for r in gateway_policy(objs)["spec"]["egress"] if "to" in r]
    namespaces = [peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in inference["to"]]
    assert namespaces == ["istio-system", "knative-serving"]


def test_results_leave_only_on_the_destinations_ports_to_the_destination_ranges(renders, render):
    egress = gateway_policy(renders["ha"])["spec"]["egress"]
    (destinations,) = [r for r in egress if any(p["port"] in (104, 443) for p in r["ports"])]
    assert sorted(p["port"] for p in destinations["ports"]) == [104, 443]
    assert destinations["to"] == [{"ipBlock": {"cidr": "10.30.0.0/16"}}]
    objs = render(set_values={"gateway.destinations": "{A@pacs:11112,B@other:11112,http://web.example:8042/dicom-web}"})
    (destinations,) = [r for r in gateway_policy(objs)["spec"]["egress"]
                       if any(p["port"] == 11112 for p in r["ports"])]
    assert sorted(p["port"] for p in destinations["ports"]) == [8042, 11112]
    assert "to" not in destinations, "no destination ranges: any address, on those ports only"


def test_no_gateway_policies_when_network_policies_are_off(render):
    objs = render(set_values={"networkPolicy.enabled": False})
    assert not gateway_objects(objs, "NetworkPolicy")


# ---- Monitoring, disruption budget, alerts ---------------------------------------------------------------------

@pytest.mark.parametrize("variant", WITH_GATEWAY)
def test_pod_monitor_scrapes_the_gateway_on_a_declared_port(renders, variant):
    objs = renders[variant]
    monitors = gateway_objects(objs, "PodMonitor")
    enabled = yaml.safe_load((CHART / "values.yaml").read_text())["monitoring"]["podMonitor"]["enabled"]
    if variant in ("knative-kserve-runtime", "minimal"):  # their values turn PodMonitors off
        enabled = False
    assert len(monitors) == int(enabled)
    for monitor in monitors:
        assert matches(monitor["spec"]["selector"], pod_labels(objs))
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert endpoint["port"] in ports_of(objs) and endpoint["path"] == "/metrics"
        relabel = {r["targetLabel"]: r for r in endpoint["relabelings"]}
        assert relabel["job"] == {"action": "replace", "targetLabel": "job", "replacement": "duet-gateway"}
        assert relabel["duet_release"]["replacement"] == "duet"
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


@pytest.mark.parametrize("variant", WITH_GATEWAY)
def test_disruption_budget_exactly_above_one_replica(renders, variant):
    objs = renders[variant]
    budgets = gateway_objects(objs, "PodDisruptionBudget")
    replicas = statefulset(objs)["spec"]["replicas"]
    assert len(budgets) == (1 if replicas > 1 else 0)
    for budget in budgets:
        assert matches(budget["spec"]["selector"], pod_labels(objs))
        assert budget["spec"]["maxUnavailable"] == 1
    if variant == "ha":
        assert replicas == 2 and budgets


def rule_groups(objs: list[dict]) -> dict[str, list[dict]]:
    (rule,) = objects_of(objs, "PrometheusRule")
    return {g["name"]: g["rules"] for g in rule["spec"]["groups"]}


def test_gateway_alerts_ship_only_with_the_gateway(renders, render):
    alerts = {r.get("alert") for r in rule_groups(renders["default"])["duet.gateway"]}
    assert {"DuetGatewayExportsFailing", "DuetGatewayDeadLetters", "DuetGatewaySpoolFilling",
            "DuetGatewayDown"} <= alerts
    without = rule_groups(render(set_values={"gateway.enabled": False}))
    assert "duet.gateway" not in without
    assert set(without) == set(rule_groups(renders["default"])) - {"duet.gateway"}


def test_the_series_the_rules_know_are_the_ones_the_gateway_declares():
    """chart_support.GATEWAY_SERIES (what the rules may read) against the metric names gateway/metrics.py
    declares, so a renamed metric cannot leave an alert reading nothing."""
    source = REPO / "gateway" / "metrics.py"
    if not source.is_file():
        pytest.skip("the gateway package is not in this checkout")
    declared = set(re.findall(r'"(duet_gateway_[a-z_]+)"', source.read_text()))
    histograms = {name for name in declared if f"{name}_bucket" in GATEWAY_SERIES}
    expected = (declared - histograms) | {f"{name}_{suffix}" for name in histograms
                                          for suffix in ("bucket", "sum", "count")}
    assert expected == GATEWAY_SERIES


def test_gateway_job_label_follows_the_value_in_monitor_and_alert(render):
    objs = render(set_values={"gateway.monitoring.jobLabel": "dicom-gw"})
    (monitor,) = gateway_objects(objs, "PodMonitor")
    relabel = {r["targetLabel"]: r for r in monitor["spec"]["podMetricsEndpoints"][0]["relabelings"]}
    assert relabel["job"]["replacement"] == "dicom-gw"
    down = next(r for r in rule_groups(objs)["duet.gateway"] if r.get("alert") == "DuetGatewayDown")
    assert 'job="dicom-gw"' in down["expr"] and "duet-gateway" not in down["expr"]


# ---- Values refused before anything is applied -----------------------------------------------------------------

@pytest.mark.parametrize(("set_values", "message"), [
    ({"gateway.aeTitle": "A-TITLE-LONGER-THAN-16"}, "/gateway/aeTitle"),
    ({"gateway.networkPolicy.allowedCIDRs": "{10.0.0.0}"}, "/gateway/networkPolicy/allowedCIDRs/0"),
    ({"gateway.destinations": "{pacs.example:104}"}, "/gateway/destinations/0"),
    ({"gateway.replicas": 0}, "/gateway/replicas"),
    ({"gateway.service.type": "ExternalName"}, "/gateway/service/type"),
    ({"gateway.spool.retention.whenScaled": "Keep"}, "/gateway/spool/retention/whenScaled"),
    ({"gateway.replica": 2}, "additional properties 'replica' not allowed"),
])
def test_helm_rejects_bad_gateway_values(render, set_values, message):
    with pytest.raises(helm_tools.HelmError) as error:
        render(set_values=set_values)
    assert message in str(error.value)


def test_helm_lint_passes_with_the_gateway_sending_elsewhere(helm):
    assert "0 chart(s) failed" in helm_tools.lint([variant_files("minimal")[0]])


def test_install_notes_say_where_to_send_studies(helm):
    def notes(*args: str) -> str:
        out = helm_tools.run_helm(["install", "duet", str(CHART), "--namespace", "duet", "--dry-run=client", *args])
        return out.split("NOTES:", 1)[1]

    default = notes()
    assert "AE title DUET at Service duet-gateway-dicom, port 11112;" in default
    assert "http://duet-gateway-http.duet.svc:8090/studies" in default
    assert "nowhere yet (set gateway.destinations)" in default
    ha = notes("--values", str(CHART / "ci" / "ha-values.yaml"))
    assert "(DICOM TLS: port 2762)" in ha
    assert "Results go to: PACS@pacs.hospital.example:104, https://archive.hospital.example/dicomweb." in ha
    assert "DICOM gateway" not in notes("--set", "gateway.enabled=false")
