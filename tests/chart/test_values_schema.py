"""values.schema.json: it covers every value, accepts the shipped values files, and makes Helm refuse a typo'd
key, a wrong type or an unknown mode at install time, naming the offending value."""

from __future__ import annotations

import json

import chart_support
import jsonschema
import pytest
import yaml
from chart_support import CHART, CI_VALUES

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def resolve(node: dict) -> dict:
    """Follow a local $ref."""
    while "$ref" in node:
        node = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def schema_paths(value, node: dict, path: str = "") -> list[str]:
    """Paths in `value` that the schema does not describe (objects must list their keys, except Kubernetes
    pass-through maps that the schema types as free-form objects)."""
    node = resolve(node)
    missing = []
    if isinstance(value, dict) and node.get("type") == "object":
        props = node.get("properties")
        if props is None:
            return []  # a free-form Kubernetes object (securityContext, affinity, labels...)
        for key, child in value.items():
            if key not in props:
                if isinstance(node.get("additionalProperties"), dict):
                    missing += schema_paths(child, node["additionalProperties"], f"{path}.{key}")
                else:
                    missing.append(f"{path}.{key}")
            else:
                missing += schema_paths(child, props[key], f"{path}.{key}")
    return missing


def test_schema_describes_every_value_in_values_yaml():
    assert schema_paths(VALUES, SCHEMA) == []


def test_every_object_in_the_schema_forbids_unknown_keys():
    def walk(node, path="$"):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, path
            for key, child in node.items():
                walk(child, f"{path}.{key}")
        elif isinstance(node, list):
            for i, child in enumerate(node):
                walk(child, f"{path}[{i}]")

    walk(SCHEMA)


@pytest.mark.parametrize("values_file", [CHART / "values.yaml", *CI_VALUES], ids=lambda p: p.name)
def test_shipped_values_files_validate_against_the_schema(values_file):
    values = yaml.safe_load(values_file.read_text())
    merged = values if values_file.name == "values.yaml" else deep_merge(VALUES, values)
    jsonschema.validate(merged, SCHEMA)


def deep_merge(base: dict, override: dict) -> dict:
    """Helm's coalescing: maps merge key by key, null deletes, anything else replaces."""
    out = dict(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.mark.parametrize(("set_values", "message"), [
    ({"networkPolicy.enabeld": True}, "additional properties 'enabeld' not allowed"),
    ({"models.mammography.predictor.minReplica": 2}, "additional properties 'minReplica' not allowed"),
    ({"transformer.imag.tag": "1.0"}, "additional properties 'imag' not allowed"),
])
def test_helm_rejects_a_typo_d_key(render, set_values, message):
    with pytest.raises(chart_support.HelmError) as error:
        render(set_values=set_values)
    assert message in str(error.value)


@pytest.mark.parametrize(("set_values", "message"), [
    ({"transformer.workers": "two"}, "/transformer/workers"),
    ({"models.sentiment.predictor.minReplicas": 0}, "/models/sentiment/predictor/minReplicas"),
    ({"networkPolicy.enabled": "yes"}, "/networkPolicy/enabled"),
    ({"autoscaling.mode": "magic"}, "/autoscaling/mode"),
    ({"kserve.deploymentMode": "Serverless"}, "/kserve/deploymentMode"),
    ({"transformer.image.digest": "latest"}, "/transformer/image/digest"),
    ({"modelRepository.storageUri": "ftp://models"}, "/modelRepository/storageUri"),
])
def test_helm_rejects_a_wrong_type_or_value(render, set_values, message):
    with pytest.raises(chart_support.HelmError) as error:
        render(set_values=set_values)
    assert message in str(error.value)


def test_helm_accepts_a_correct_override(render):
    objs = render(set_values={"transformer.workers": 3, "autoscaling.mode": "hpa"})
    isvc = next(o for o in objs if o["kind"] == "InferenceService")
    assert "--workers=3" in isvc["spec"]["transformer"]["containers"][0]["args"]
