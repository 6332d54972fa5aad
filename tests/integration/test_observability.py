"""A real Prometheus scraping the real local stack with duet's rules: recording rules, dashboard queries,
the chart's autoscaling queries and the predictor-down alert."""

from __future__ import annotations

import importlib.util
import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import yaml

from duet.local.prometheus import LOCAL_NAMESPACE, RULES_FILE, PrometheusServer, PrometheusUnavailable
from duet.local.stack import free_ports
from duet.paths import ROOT

from .conftest import start_stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DASHBOARD = ROOT / "charts" / "duet" / "files" / "dashboard.json"
# Series that only exist on a cluster: kube-state-metrics (autoscaler replicas) and DCGM/GPU metrics.
CLUSTER_ONLY = ("kube_horizontalpodautoscaler", "nv_gpu_utilization")


def _wait_for(predicate, timeout_s: float, interval_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    return predicate()


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    models = tuple(os.environ.get("DUET_TEST_MODELS", "mammography,sentiment").split(","))
    stack = start_stack(tmp_path_factory.mktemp("observed"), "triton", models)
    prometheus = PrometheusServer(stack, port=free_ports(1)[0], interval_s=1.0)
    try:
        prometheus.start()
    except PrometheusUnavailable as reason:
        stack.stop()
        pytest.skip(f"real Prometheus needed: {reason}")
    try:
        yield stack, prometheus
    finally:
        prometheus.stop()
        stack.stop()


def _send_study(stack) -> None:
    from loadtests.payloads import mammography_body, mammography_study

    body, headers = mammography_body(mammography_study(seed=3, images=2, rows=512, columns=416))
    reply = httpx.post(f"{stack.transformer_http}/v2/models/mammography/infer", content=body, headers=headers,
                       timeout=60)
    assert reply.status_code == 200, reply.text


def _send_traffic(stack, seconds: float, concurrency: int = 8) -> int:
    if "mammography" in stack.models:
        _send_study(stack)
    url = f"{stack.transformer_http}/v2/models/sentiment/infer"
    deadline = time.monotonic() + seconds

    def worker(index: int) -> int:
        sent = 0
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < deadline:
                texts = [f"headline {index}-{sent} markets {'rise' if sent % 2 else 'fall'}"] * 8
                body = {"inputs": [{"name": "text", "shape": [8], "datatype": "BYTES", "data": texts}]}
                client.post(url, json=body)
                if sent % 10 == 0:  # a few client errors, so the 4xx series exist too
                    client.post(url, json={"inputs": [{"name": "txt", "shape": [1], "datatype": "BYTES",
                                                       "data": ["x"]}]})
                sent += 1
        return sent

    with ThreadPoolExecutor(concurrency) as pool:
        return sum(pool.map(worker, range(concurrency)))


def _recording_rules() -> list[str]:
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return [rule["record"] for group in groups for rule in group["rules"] if "record" in rule]


def test_recording_rules_produce_values_after_traffic(observed) -> None:
    stack, prometheus = observed
    assert _send_traffic(stack, seconds=6) > 0
    missing = []
    for record in _recording_rules():
        if not _wait_for(lambda r=record: prometheus.query(r), timeout_s=20):
            missing.append(record)
    assert not missing, f"recording rules with no data after traffic: {missing}"
    rate = prometheus.query('sum(duet:requests:rate1m{model="sentiment", code_class="2xx"})')
    assert float(rate[0]["value"][1]) > 0
    batch = prometheus.query('duet:triton_batch_size:avg1m{model="sentiment"}')
    assert float(batch[0]["value"][1]) >= 1


def test_every_dashboard_query_returns_data(observed) -> None:
    stack, prometheus = observed
    _send_traffic(stack, seconds=4)
    dashboard = json.loads(DASHBOARD.read_text())
    checked, empty = 0, []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            if any(name in expr for name in CLUSTER_ONLY):
                continue
            if "mammography" not in os.environ.get("DUET_TEST_MODELS", "mammography") and (
                "study_images" in expr or "decoded_images" in expr
            ):
                continue
            query = expr.replace("$namespace", LOCAL_NAMESPACE).replace("$__rate_interval", "1m")
            checked += 1
            if not _wait_for(lambda q=query: prometheus.query(q), timeout_s=20):
                empty.append(f"{panel['title']}: {expr}")
    assert checked >= 15
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)


def _walk_queries(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["query"]] if isinstance(node.get("query"), str) else []
        return found + [q for value in node.values() for q in _walk_queries(value)]
    if isinstance(node, list):
        return [q for value in node for q in _walk_queries(value)]
    return []


def _autoscaling_queries() -> dict[str, str]:
    """The autoscaling queries the chart renders for namespace duet-local (KServe-generated KEDA triggers in the
    InferenceServices by default, or the chart's own ScaledObjects), keyed by object and position."""
    spec = importlib.util.spec_from_file_location("chart_support", ROOT / "tests" / "chart" / "chart_support.py")
    chart_support = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(chart_support)
    try:
        objects = chart_support.render([], {}, release="duet", namespace=LOCAL_NAMESPACE)
    except chart_support.HelmUnavailable as reason:
        pytest.skip(f"no helm binary: {reason}")
    return {
        f"{o['kind']}/{o['metadata']['name']}#{index}": query
        for o in objects if o.get("kind") in ("InferenceService", "ScaledObject")
        for index, query in enumerate(_walk_queries(o["spec"]))
    }


def test_chart_autoscaling_queries_rise_with_load(observed) -> None:
    stack, prometheus = observed
    queries = {name: q for name, q in _autoscaling_queries().items() if "sentiment" in q}
    assert queries, "the chart renders no autoscaling query for sentiment"

    def value(query: str) -> float:
        result = prometheus.query(query)
        return float(result[0]["value"][1]) if result else 0.0

    # Every 1m rate window forgets the earlier tests' traffic: wait (with a deadline) until the queries are idle.
    _wait_for(lambda: all(value(q) == 0 for q in queries.values()), timeout_s=90, interval_s=2)
    idle = {name: value(q) for name, q in queries.items()}

    def busy_now() -> dict[str, float]:
        # The highest value seen during the load only (gauges like in-flight are sampled once a scrape).
        return {name: value(f"max_over_time(({q})[10s:1s])") for name, q in queries.items()}

    with ThreadPoolExecutor(1) as pool:
        load = pool.submit(_send_traffic, stack, 14, 24)
        _wait_for(lambda: all(seen > idle[name] for name, seen in busy_now().items()), timeout_s=24,
                    interval_s=1)
        busy = busy_now()
        load.result()
    rose = [name for name in queries if busy[name] > idle[name]]
    assert rose == list(queries), f"idle {idle} vs busy {busy}"


def test_predictor_stopped_fires_predictor_down_alert(observed) -> None:
    stack, prometheus = observed
    stack.stop_predictor()
    try:
        def firing() -> bool:
            return any(a["labels"]["alertname"] == "DuetPredictorDown" and a["state"] == "firing"
                       for a in prometheus.alerts())

        assert _wait_for(firing, timeout_s=100, interval_s=2), prometheus.alerts()
    finally:
        stack.start_predictor()
