"""skaffold.yaml (no skaffold binary here): it parses, every path it names exists, its setValueTemplates set real
chart values for every artifact (repository, tag, digest), its profiles apply as JSON patches onto paths that
exist and select tested values files, and its port-forwards name the Services KServe and the gateway create for
the release."""

from __future__ import annotations

import copy
import re

import pytest
import yaml
from chart_support import CHART, REPO

SKAFFOLD = yaml.safe_load((REPO / "skaffold.yaml").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def sanitize(image: str) -> str:
    """skaffold's template key for an artifact name: / - . : become _."""
    return re.sub(r"[/\-.:]", "_", image)


def lookup(values: dict, dotted: str):
    node = values
    for part in dotted.split("."):
        node = node[part]
    return node


def apply_patch(config: dict, patch: dict) -> dict:
    """Apply one JSON-patch `add` operation (what the profiles use); its parent path must exist."""
    assert patch["op"] == "add"
    out = copy.deepcopy(config)
    *parents, last = [p for p in patch["path"].split("/") if p]
    node = out
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node.insert(int(last), patch["value"])
    else:
        node[last] = patch["value"]
    return out


def profile(name: str) -> dict:
    config = {k: v for k, v in SKAFFOLD.items() if k != "profiles"}
    spec = next(p for p in SKAFFOLD["profiles"] if p["name"] == name)
    for patch in spec["patches"]:
        config = apply_patch(config, patch)
    return config


def test_skaffold_config_is_current_and_names_existing_paths():
    assert SKAFFOLD["apiVersion"].startswith("skaffold/v4")
    assert SKAFFOLD["kind"] == "Config"
    artifacts = {a["image"]: a for a in SKAFFOLD["build"]["artifacts"]}
    assert set(artifacts) == {"duet-transformer", "duet-models", "duet-gateway"}
    assert artifacts["duet-transformer"]["docker"]["dockerfile"] == "transformers_pre/Dockerfile"
    assert artifacts["duet-models"]["docker"]["dockerfile"] == "models/Dockerfile"
    assert artifacts["duet-gateway"]["docker"]["dockerfile"] == "gateway/Dockerfile"
    for artifact in artifacts.values():
        context = REPO / artifact.get("context", ".")
        assert (context / artifact["docker"]["dockerfile"]).is_file()
    (release,) = SKAFFOLD["deploy"]["helm"]["releases"]
    assert (REPO / release["chartPath"] / "Chart.yaml").is_file()


def test_set_value_templates_set_repository_tag_and_digest_of_every_image():
    (release,) = SKAFFOLD["deploy"]["helm"]["releases"]
    templates = release["setValueTemplates"]
    expected = {"transformer.image": "duet-transformer", "modelRepository.image": "duet-models",
                "gateway.image": "duet-gateway"}
    for prefix, artifact in expected.items():
        key = sanitize(artifact)
        assert templates[f"{prefix}.repository"] == f"{{{{.IMAGE_REPO_{key}}}}}"
        assert templates[f"{prefix}.tag"] == f"{{{{.IMAGE_TAG_{key}}}}}"
        assert templates[f"{prefix}.digest"] == f"{{{{.IMAGE_DIGEST_{key}}}}}"
    for dotted in templates:
        lookup(VALUES, dotted)  # KeyError if the chart has no such value


def test_chart_renders_with_what_skaffold_sets(render):
    (release,) = SKAFFOLD["deploy"]["helm"]["releases"]
    built = {"duet_transformer": ("registry.local/duet-transformer", "abc123", "sha256:" + "1" * 64),
             "duet_models": ("registry.local/duet-models", "def456", "sha256:" + "2" * 64),
             "duet_gateway": ("registry.local/duet-gateway", "fed789", "sha256:" + "3" * 64)}
    values = {}
    for dotted, template in release["setValueTemplates"].items():
        field, artifact = re.fullmatch(r"\{\{\.IMAGE_(REPO|TAG|DIGEST)_(\w+)\}\}", template).groups()
        values[dotted] = built[artifact][("REPO", "TAG", "DIGEST").index(field)]
    objs = render(values_files=[REPO / f for f in profile("dev")["deploy"]["helm"]["releases"][0]["valuesFiles"]],
                  set_values=values, release=release["name"], namespace=release["namespace"])
    isvc = next(o for o in objs if o["kind"] == "InferenceService")
    assert isvc["spec"]["transformer"]["containers"][0]["image"] == (
        "registry.local/duet-transformer:abc123@sha256:" + "1" * 64)
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == (
        "oci://registry.local/duet-models:def456@sha256:" + "2" * 64)
    gateway = next(o for o in objs if o["kind"] == "StatefulSet")
    assert gateway["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.local/duet-gateway:fed789@sha256:" + "3" * 64)


@pytest.mark.parametrize("name", ["dev", "gpu"])
def test_profiles_patch_existing_paths_and_select_tested_values_files(name):
    config = profile(name)
    (release,) = config["deploy"]["helm"]["releases"]
    for values_file in release["valuesFiles"]:
        assert (REPO / values_file).is_file()
        assert (REPO / values_file).parent == CHART / "ci", "profile values are rendered by the chart tests"


def test_dev_profile_syncs_python_into_the_hot_reload_directory(render):
    config = profile("dev")
    sync = config["build"]["artifacts"][0]["sync"]["manual"]
    assert config["build"]["artifacts"][0]["image"] == "duet-transformer"
    assert sync == [{"src": "transformers_pre/**/*.py", "dest": "/app-dev"}]
    assert list((REPO / "transformers_pre").rglob("*.py"))
    values_files = [REPO / f for f in config["deploy"]["helm"]["releases"][0]["valuesFiles"]]
    isvc = next(o for o in render(values_files=values_files) if o["kind"] == "InferenceService")
    transformer = isvc["spec"]["transformer"]
    container = transformer["containers"][0]
    assert {"name": "app-dev", "mountPath": "/app-dev"} in container["volumeMounts"]
    assert container["workingDir"] == "/app-dev"
    assert "watchfiles" in " ".join(container["command"])
    assert transformer["initContainers"][0]["command"][-1] == "cp -R /app/. /app-dev/"
    assert isvc["spec"]["predictor"]["minReplicas"] == isvc["spec"]["predictor"]["maxReplicas"] == 1
    assert "sync" not in profile("gpu")["build"]["artifacts"][0], "only dev has a writable code directory"


def test_port_forwards_name_the_transformer_services_kserve_creates(render):
    (release,) = SKAFFOLD["deploy"]["helm"]["releases"]
    objs = render(release=release["name"], namespace=release["namespace"])
    services = {f"{o['metadata']['name']}-transformer" for o in objs if o["kind"] == "InferenceService"}
    forwards = [f for f in SKAFFOLD["portForward"] if "-gateway-" not in f["resourceName"]]
    assert {f["resourceName"] for f in forwards} == services
    assert len({f["localPort"] for f in SKAFFOLD["portForward"]}) == len(SKAFFOLD["portForward"])
    for forward in forwards:
        assert forward["resourceType"] == "service" and forward["port"] == 80
        assert forward["namespace"] == release["namespace"]


def test_port_forwards_reach_the_gateways_services_and_ports(render):
    (release,) = SKAFFOLD["deploy"]["helm"]["releases"]
    objs = render(release=release["name"], namespace=release["namespace"])
    ports = {o["metadata"]["name"]: {p["port"] for p in o["spec"]["ports"]} for o in objs if o["kind"] == "Service"}
    forwards = [f for f in SKAFFOLD["portForward"] if "-gateway-" in f["resourceName"]]
    assert {f["resourceName"] for f in forwards} == {"duet-gateway-dicom", "duet-gateway-http"}
    for forward in forwards:
        assert forward["port"] in ports[forward["resourceName"]], forward
        assert forward["namespace"] == release["namespace"]


def test_custom_resources_get_skaffold_image_rewriting():
    allowed = {entry["groupKind"] for entry in SKAFFOLD["resourceSelector"]["allow"]}
    assert {"InferenceService.serving.kserve.io", "ServingRuntime.serving.kserve.io"} <= allowed
