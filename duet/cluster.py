"""`duet cluster status` and `duet cluster smoke`: duet on a Kubernetes cluster after `helm install`.

status: each duet InferenceService's readiness, URL, ready pods per component and the conditions that are not
True, read from the Kubernetes API with the `kubernetes` client (kubeconfig, or the in-cluster account).
smoke: one real v2 request per model through the cluster's ingress (a sentiment batch, a synthetic 4-view
mammography study), checked against the public contract (docs/api.md).

Both exit non-zero when something is wrong, so they work as deployment gates.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Annotated
from urllib.parse import urlsplit

import httpx
import typer
from rich.console import Console
from rich.table import Table

from transformers_pre import registry

from . import v2

KSERVE_GROUP = "serving.kserve.io"
KSERVE_VERSION = "v1beta1"
ISVC_PLURAL = "inferenceservices"
# KServe labels every pod of an InferenceService with its name and its component.
ISVC_POD_LABEL = "serving.kserve.io/inferenceservice"
COMPONENT_LABEL = "component"
# The chart labels each InferenceService with the public model it serves.
MODEL_LABEL = "duet/model"
DEFAULT_SELECTOR = "app.kubernetes.io/part-of=duet"
SMOKE_TEXTS = ["The new clinic opened on time and patients were pleased.",
               "The delays were unacceptable and nobody apologised."]
SENTIMENT_CLASSES = 3

cluster_app = typer.Typer(help="Inspect and smoke-test duet on a Kubernetes cluster (after helm install).",
                          no_args_is_help=True)

Namespace = Annotated[str, typer.Option("--namespace", "-n", help="Namespace of the duet release.")]
Selector = Annotated[str, typer.Option(help="Label selector of duet's InferenceServices.")]
Kubeconfig = Annotated[str | None, typer.Option(help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, "
                                                     "then the in-cluster service account).")]
Context = Annotated[str | None, typer.Option(help="kubeconfig context (default: the current one).")]


class ClusterError(RuntimeError):
    """The cluster could not be reached or answered something unusable."""


@dataclass
class ComponentPods:
    """Pods of one InferenceService component: how many exist and how many are Ready."""

    ready: int = 0
    total: int = 0


@dataclass
class ServiceState:
    """What `status` reports for one InferenceService."""

    name: str
    model: str
    ready: bool
    url: str | None
    pods: dict[str, ComponentPods] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def api_client(kubeconfig: str | None = None, context: str | None = None):
    """A kubernetes ApiClient from a kubeconfig file, else from the in-cluster service account."""
    from kubernetes import client, config

    try:
        return config.new_client_from_config(config_file=kubeconfig, context=context)
    except config.ConfigException as exc:
        if kubeconfig or context:
            raise ClusterError(f"cannot use kubeconfig {kubeconfig or '(default)'} / context {context}: {exc}") from exc
    try:
        config.load_incluster_config()
    except config.ConfigException as exc:
        raise ClusterError("no kubeconfig found and not running in a cluster (pass --kubeconfig)") from exc
    return client.ApiClient()


def _api_call(what: str, call, *args, **kwargs):
    """Run one API call, turning transport and API errors into ClusterError naming `what`."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return call(*args, **kwargs)
    except ApiException as exc:
        if exc.status == 404 and what == "InferenceServices":
            raise ClusterError(f"the API server has no {ISVC_PLURAL}.{KSERVE_GROUP}/{KSERVE_VERSION}: "
                               "is KServe installed?") from exc
        raise ClusterError(f"listing {what} failed: {exc.status} {exc.reason}") from exc
    except HTTPError as exc:
        raise ClusterError(f"cannot reach the API server while listing {what}: {exc}") from exc


def model_of(isvc: dict) -> str:
    """The public model an InferenceService serves: the chart's label, else its name's last part."""
    return isvc["metadata"].get("labels", {}).get(MODEL_LABEL) or isvc["metadata"]["name"].rsplit("-", 1)[-1]


def inference_services(api, namespace: str, selector: str) -> list[dict]:
    """duet's InferenceServices in `namespace` (raw API objects), sorted by name."""
    from kubernetes import client

    listing = _api_call("InferenceServices", client.CustomObjectsApi(api).list_namespaced_custom_object,
                        KSERVE_GROUP, KSERVE_VERSION, namespace, ISVC_PLURAL, label_selector=selector)
    return sorted(listing.get("items", []), key=lambda item: item["metadata"]["name"])


def service_state(api, isvc: dict) -> ServiceState:
    """Readiness, URL, pods per component and non-True conditions of one InferenceService."""
    from kubernetes import client

    metadata, status = isvc["metadata"], isvc.get("status", {})
    conditions = status.get("conditions", [])
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    problems = [f"{c['type']}: {c.get('reason') or c['status']}" + (f" ({c['message']})" if c.get("message") else "")
                for c in conditions if c["status"] != "True"]
    if not conditions:
        problems.append("no status yet (KServe has not reconciled it)")
    pods: dict[str, ComponentPods] = {}
    listing = _api_call("pods", client.CoreV1Api(api).list_namespaced_pod, metadata["namespace"],
                        label_selector=f"{ISVC_POD_LABEL}={metadata['name']}")
    for pod in listing.items:
        component = (pod.metadata.labels or {}).get(COMPONENT_LABEL, "other")
        counts = pods.setdefault(component, ComponentPods())
        counts.total += 1
        pod_conditions = (pod.status.conditions or []) if pod.status else []
        if any(c.type == "Ready" and c.status == "True" for c in pod_conditions):
            counts.ready += 1
    return ServiceState(name=metadata["name"], model=model_of(isvc), ready=ready, url=status.get("url"),
                        pods=pods, problems=problems)


def status_table(states: list[ServiceState]) -> Table:
    table = Table("InferenceService", "model", "ready", "URL", "predictor pods", "transformer pods", "problems",
                  title="duet on the cluster")
    for state in states:
        def pods(component: str, state: ServiceState = state) -> str:
            counts = state.pods.get(component)
            return f"{counts.ready}/{counts.total}" if counts else "0/0"

        table.add_row(state.name, state.model, "[green]yes[/]" if state.ready else "[red]no[/]", state.url or "-",
                      pods("predictor"), pods("transformer"), "\n".join(state.problems) or "-")
    return table


def _services_or_exit(console: Console, namespace: str, selector: str, kubeconfig: str | None,
                      context: str | None) -> tuple[object, list[dict]]:
    """The API client and the matching InferenceServices; exits 2 on an API error, 1 when none matches."""
    try:
        api = api_client(kubeconfig, context)
        services = inference_services(api, namespace, selector)
    except ClusterError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    if not services:
        console.print(f"[red]no InferenceService matching {selector!r} in namespace {namespace!r}[/]")
        raise typer.Exit(1)
    return api, services


@cluster_app.command()
def status(namespace: Namespace = "duet", selector: Selector = DEFAULT_SELECTOR, kubeconfig: Kubeconfig = None,
           context: Context = None) -> None:
    """Show each InferenceService's readiness, URL, ready pods per component and failing conditions.

    Exits 1 when none is found or any is not Ready.
    """
    console = Console()
    api, services = _services_or_exit(console, namespace, selector, kubeconfig, context)
    try:
        states = [service_state(api, isvc) for isvc in services]
    except ClusterError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    console.print(status_table(states))
    if not all(state.ready for state in states):
        raise typer.Exit(1)


# ---- smoke ----------------------------------------------------------------------------------------------------

@dataclass
class SmokeResult:
    """One model's smoke request: what was sent where, and whether the answer met the contract."""

    model: str
    ok: bool
    detail: str
    seconds: float


def outputs_by_name(body: dict) -> dict[str, dict]:
    return {output["name"]: output for output in body.get("outputs", [])}


def served_version(body: dict) -> str:
    """The answer's `model_version` (docs/api.md: every answer names the served build); ValueError without it."""
    version = body.get("model_version")
    if not version:
        raise ValueError("the answer has no model_version")
    return str(version)


def check_sentiment(body: dict, n: int) -> str:
    """Validate a sentiment response for n texts against the contract; return a summary or raise ValueError."""
    version = served_version(body)
    out = outputs_by_name(body)
    for name in registry.model("sentiment").outputs:
        if name not in out:
            raise ValueError(f"missing output {name!r}")
    if out["probabilities"]["shape"] != [n, SENTIMENT_CLASSES]:
        raise ValueError(f"probabilities shape {out['probabilities']['shape']}, expected [{n}, 3]")
    probabilities = out["probabilities"]["data"]
    for row in range(n):
        total = sum(probabilities[row * SENTIMENT_CLASSES:(row + 1) * SENTIMENT_CLASSES])
        if not math.isclose(total, 1.0, abs_tol=1e-3):
            raise ValueError(f"probabilities of text {row} sum to {total:.4f}")
    if len(out["label"]["data"]) != n or len(out["entropy"]["data"]) != n:
        raise ValueError("label/entropy do not have one element per text")
    return "labels " + ", ".join(str(label) for label in out["label"]["data"]) + f" (version {version})"


def check_mammography(body: dict, n_images: int) -> str:
    """Validate a mammography response for an n-image study; return a summary or raise ValueError."""
    version = served_version(body)
    out = outputs_by_name(body)
    for name in registry.model("mammography").outputs:
        if name not in out:
            raise ValueError(f"missing output {name!r}")
    m = out["scores"]["shape"][0]
    if out["boxes"]["shape"] != [m, 4] or out["labels"]["shape"] != [m] or out["image_index"]["shape"] != [m]:
        raise ValueError("boxes/labels/image_index do not match scores")
    if out["quality"]["shape"] != [n_images]:
        raise ValueError(f"quality shape {out['quality']['shape']}, expected [{n_images}]")
    if any(not 0 <= i < n_images for i in out["image_index"]["data"]):
        raise ValueError("image_index outside the study")
    risk = out["risk"]["data"][0]
    if not 0.0 <= risk <= 1.0:
        raise ValueError(f"risk {risk} is not a probability")
    return f"{m} findings, risk {risk:.3f} (version {version})"


def smoke_request(client: httpx.Client, base: str, host: str | None, model: str,
                  request: tuple[bytes, dict[str, str]]) -> dict:
    """POST one v2 inference request (body and headers from `duet.v2.request_body`); return the JSON answer or
    raise ValueError naming the failure."""
    body, headers = request
    response = client.post(f"{base}/v2/models/{model}/infer", content=body,
                           headers={**headers, "Host": host} if host else headers)
    if response.status_code != 200:
        raise ValueError(f"HTTP {response.status_code}: {response.text[:300]}")
    return response.json()


def smoke_sentiment(client: httpx.Client, base: str, host: str | None, seed: int) -> str:
    """A batch of two texts; the answer checked by `check_sentiment` (`seed` unused: the texts are fixed)."""
    request = v2.model_request("sentiment", SMOKE_TEXTS)
    return check_sentiment(smoke_request(client, base, host, "sentiment", request), len(SMOKE_TEXTS))


def smoke_mammography(client: httpx.Client, base: str, host: str | None, seed: int) -> str:
    """A synthetic 4-view study from `seed`; the answer checked by `check_mammography`."""
    from .synthetic_dicom import synth_study

    study = [image.to_bytes() for image in synth_study(seed, images=4)]
    request = v2.model_request("mammography", study)
    return check_mammography(smoke_request(client, base, host, "mammography", request), len(study))


def smoke_model(client: httpx.Client, base: str, host: str | None, model: str, seed: int) -> SmokeResult:
    """Send the model's smoke request (its registry entry's `smoke`) and check the answer."""
    started = time.perf_counter()
    if model not in registry.MODELS:
        return SmokeResult(model, False, "not a duet model", 0.0)
    try:
        detail = registry.load(registry.model(model).smoke)(client, base, host, seed)
    except (ValueError, KeyError, IndexError, TypeError, httpx.HTTPError) as exc:
        return SmokeResult(model, False, f"{type(exc).__name__}: {exc}", time.perf_counter() - started)
    return SmokeResult(model, True, detail, time.perf_counter() - started)


def route(isvc_url: str | None, ingress: str | None) -> tuple[str, str | None]:
    """(base URL to POST to, Host header) for an InferenceService: through the ingress with the service's host
    name when an ingress is given, else straight to the service's URL."""
    if ingress:
        if not isvc_url:
            raise ValueError("the InferenceService has no URL yet")
        return ingress.rstrip("/"), urlsplit(isvc_url).netloc
    if not isvc_url:
        raise ValueError("the InferenceService has no URL yet; pass --ingress")
    return isvc_url.rstrip("/"), None


@cluster_app.command()
def smoke(
    ingress: Annotated[str | None, typer.Option(
        help="Ingress gateway URL (http://host:port); requests carry each InferenceService's host name. "
             "Without it, each InferenceService's status URL is called directly.")] = None,
    namespace: Namespace = "duet",
    selector: Selector = DEFAULT_SELECTOR,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic mammography study.")] = 7,
    timeout: Annotated[float, typer.Option(help="Seconds per request.")] = 60.0,
    verify: Annotated[bool, typer.Option(help="Verify TLS certificates.")] = True,
) -> None:
    """Send one real request per model through the ingress and check each answer against the contract.

    Exits 1 when any model fails.
    """
    console = Console()
    _, services = _services_or_exit(console, namespace, selector, kubeconfig, context)
    results = []
    with httpx.Client(timeout=timeout, verify=verify) as client:
        for isvc in services:
            model = model_of(isvc)
            try:
                base, host = route(isvc.get("status", {}).get("url"), ingress)
            except ValueError as exc:
                results.append(SmokeResult(model, False, str(exc), 0.0))
                continue
            results.append(smoke_model(client, base, host, model, seed))
    table = Table("model", "result", "seconds", "detail", title="duet smoke test")
    for result in results:
        table.add_row(result.model, "[green]ok[/]" if result.ok else "[red]FAILED[/]", f"{result.seconds:.2f}",
                      result.detail)
    console.print(table)
    if not all(result.ok for result in results):
        raise typer.Exit(1)


# ---- traffic ------------------------------------------------------------------------------------------------------
# A model version rolling out (docs/operations.md, "Rolling out a model version"): the split KServe applies and,
# side by side, what each version serves. The chart's PodMonitors label every series with duet_release and with the
# pod's Knative revision or KServe InferenceService (a Standard-mode canary is an InferenceService of its own).

CANARY_OF_ANNOTATION = "duet/canary-of"
CANARY_PERCENT_ANNOTATION = "duet/traffic-percent"
VERSION_LABELS = ("revision", "inferenceservice")


@dataclass
class VersionStats:
    """What one version of a model served over the window, from the transformer's public-API series."""

    model: str
    version: str
    requests_per_second: float
    error_ratio: float | None
    p99_seconds: float | None


def version_queries(namespace: str, release: str, window: str) -> dict[str, str]:
    """PromQL for request rate, 5xx rate and p99 latency per model and version, scoped to one release."""
    scope = f'namespace="{namespace}",duet_release="{release}"'
    by = "model, " + ", ".join(VERSION_LABELS)
    return {
        "rate": f"sum by ({by}) (rate(duet_requests_total{{{scope}}}[{window}]))",
        "errors": f'sum by ({by}) (rate(duet_requests_total{{{scope},code_class="5xx"}}[{window}]))',
        "p99": f"histogram_quantile(0.99, sum by ({by}, le) "
               f"(rate(duet_request_duration_seconds_bucket{{{scope}}}[{window}])))",
    }


def prometheus_query(client: httpx.Client, base: str, query: str, at: float | None = None) -> list[dict]:
    """Instant-query result vector from Prometheus' HTTP API; ClusterError on any failure."""
    params = {"query": query} | ({"time": f"{at:.3f}"} if at is not None else {})
    try:
        response = client.get(f"{base.rstrip('/')}/api/v1/query", params=params)
    except httpx.HTTPError as exc:
        raise ClusterError(f"cannot reach Prometheus at {base}: {exc}") from exc
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or body.get("status") != "success":
        raise ClusterError(f"Prometheus refused the query ({response.status_code}): {body.get('error', response.text)}")
    return body["data"]["result"]


def _version_of(metric: dict) -> str:
    return next((metric[label] for label in VERSION_LABELS if metric.get(label)), "-")


def version_stats(client: httpx.Client, base: str, namespace: str, release: str, window: str = "5m",
                  at: float | None = None) -> list[VersionStats]:
    """Request rate, 5xx ratio and p99 latency of every (model, version), sorted."""
    samples: dict[str, dict[tuple[str, str], float]] = {}
    for name, query in version_queries(namespace, release, window).items():
        samples[name] = {(item["metric"].get("model", "-"), _version_of(item["metric"])): float(item["value"][1])
                         for item in prometheus_query(client, base, query, at)}
    stats = []
    for key in sorted(samples["rate"]):
        rate = samples["rate"][key]
        errors = samples["errors"].get(key, 0.0)
        p99 = samples["p99"].get(key)
        stats.append(VersionStats(model=key[0], version=key[1], requests_per_second=rate,
                                  error_ratio=errors / rate if rate > 0 else None,
                                  p99_seconds=p99 if p99 is not None and math.isfinite(p99) else None))
    return stats


def traffic_split(services: list[dict]) -> dict[str, int]:
    """Percent of requests per version: Knative revisions from KServe's status of the transformer (where requests
    enter), and a Standard-mode canary InferenceService's share from the chart's annotations."""
    split: dict[str, int] = {}
    for isvc in services:
        components = isvc.get("status", {}).get("components", {})
        for target in (components.get("transformer") or {}).get("traffic", []):
            if target.get("revisionName"):
                split[target["revisionName"]] = split.get(target["revisionName"], 0) + int(target.get("percent", 0))
        annotations = isvc["metadata"].get("annotations", {})
        if CANARY_OF_ANNOTATION in annotations:
            percent = int(annotations.get(CANARY_PERCENT_ANNOTATION, "0"))
            split[isvc["metadata"]["name"]] = percent
            split[annotations[CANARY_OF_ANNOTATION]] = 100 - percent
    return split


def traffic_table(stats: list[VersionStats], split: dict[str, int]) -> Table:
    table = Table("model", "version", "traffic %", "requests/s", "5xx ratio", "p99 s",
                  title="duet traffic by version (transformer, public API)")
    for item in stats:
        share = split.get(item.version)
        table.add_row(item.model, item.version, "?" if share is None else str(share),
                      f"{item.requests_per_second:.2f}",
                      "-" if item.error_ratio is None else f"{item.error_ratio:.4f}",
                      "-" if item.p99_seconds is None else f"{item.p99_seconds:.3f}")
    return table


@cluster_app.command()
def traffic(
    prometheus: Annotated[str, typer.Option(help="Prometheus base URL (e.g. a port-forward of prometheus-operated).")],
    namespace: Namespace = "duet",
    release: Annotated[str, typer.Option(help="Helm release name (the duet_release label).")] = "duet",
    window: Annotated[str, typer.Option(help="Rate window, PromQL duration.")] = "5m",
    at: Annotated[float | None, typer.Option(help="Evaluate at this Unix time (default: now).")] = None,
    fail_above: Annotated[float | None, typer.Option(
        help="Exit 1 when any version's 5xx ratio is above this (a gate for promoting a canary).")] = None,
    selector: Selector = DEFAULT_SELECTOR,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> None:
    """Show each model version's share of traffic, request rate, 5xx ratio and p99 latency side by side.

    The split comes from the cluster (KServe's status, the chart's canary annotations); without API access the
    Prometheus figures are shown alone. Exits 2 when Prometheus cannot answer.
    """
    console = Console()
    split: dict[str, int] = {}
    try:
        split = traffic_split(inference_services(api_client(kubeconfig, context), namespace, selector))
    except ClusterError as exc:
        console.print(f"[yellow]traffic split unavailable ({exc}); showing Prometheus figures only[/]")
    try:
        with httpx.Client(timeout=30.0) as client:
            stats = version_stats(client, prometheus, namespace, release, window, at)
    except ClusterError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    if not stats:
        console.print(f"[yellow]no duet requests for release {release!r} in namespace {namespace!r} "
                      f"over the last {window}[/]")
    console.print(traffic_table(stats, split))
    failing = [s for s in stats if fail_above is not None and s.error_ratio is not None and s.error_ratio > fail_above]
    for item in failing:
        console.print(f"[red]{item.model} {item.version}: 5xx ratio {item.error_ratio:.4f} above {fail_above}[/]")
    if failing:
        raise typer.Exit(1)
