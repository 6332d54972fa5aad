"""metric_totals reads Prometheus text exposition with prometheus_client's parser, per family and labels."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest

from duet.local.prometheus import metric_totals

# Triton's own exposition (its counters carry no `_total` suffix), as /metrics serves it.
TRITON_TEXT = """\
# HELP nv_inference_count Number of inferences performed (does not include cached requests)
# TYPE nv_inference_count counter
nv_inference_count{model="sentiment",version="1"} 96
nv_inference_count{model="mammo_detector",version="1"} 4
# HELP nv_inference_exec_count Number of model executions performed (does not include cached requests)
# TYPE nv_inference_exec_count counter
nv_inference_exec_count{model="sentiment",version="1"} 21
nv_inference_exec_count{model="mammo_detector",version="1"} 4
"""


def test_triton_counters_are_summed_per_model() -> None:
    counters = ("nv_inference_count", "nv_inference_exec_count")
    assert metric_totals(TRITON_TEXT, counters, model="sentiment") == {"nv_inference_count": 96.0,
                                                                       "nv_inference_exec_count": 21.0}
    assert metric_totals(TRITON_TEXT, counters) == {"nv_inference_count": 100.0, "nv_inference_exec_count": 25.0}
    assert metric_totals(TRITON_TEXT, ["nv_gpu_utilization"], model="sentiment") == {"nv_gpu_utilization": 0.0}
    assert metric_totals(TRITON_TEXT, counters, model="absent") == dict.fromkeys(counters, 0.0)


def test_prometheus_client_exposition_round_trips() -> None:
    registry = CollectorRegistry()
    requests = Counter("duet_requests", "Requests.", ["model", "code"], registry=registry)
    requests.labels("sentiment", "200").inc(5)
    requests.labels("sentiment", "400").inc(2)
    requests.labels("mammography", "200").inc(1)
    text = generate_latest(registry).decode()
    assert metric_totals(text, ["duet_requests"], model="sentiment") == {"duet_requests": 7.0}
    assert metric_totals(text, ["duet_requests"], model="sentiment", code="400") == {"duet_requests": 2.0}
