"""duet's own Prometheus series (prefix `duet_`, base units, bounded labels).

KServe's stage histograms (`request_preprocess_seconds`, ...) stay; these add the per-stage breakdown, status
classes and payload sizes. Buckets sit on the objectives: text in tens of milliseconds, a 4-view JPEG 2000
mammography study in seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS_SECONDS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.4, 0.6, 1.0, 1.5, 2.5, 4.0, 6.0, 10.0, 20.0, 40.0,
)
PAYLOAD_BUCKETS_BYTES = tuple(float(1 << power) for power in range(8, 31, 2))  # 256 B .. 1 GiB

REQUESTS = Counter("duet_requests", "Inference requests by outcome.", ["model", "code_class"])
REQUEST_SECONDS = Histogram(
    "duet_request_duration_seconds", "End-to-end inference latency in the transformer.", ["model"],
    buckets=LATENCY_BUCKETS_SECONDS,
)
STAGE_SECONDS = Histogram(
    "duet_stage_duration_seconds",
    "Latency of one pipeline stage (intake, decode, window, resize, tokenize, predictor, postprocess, report).",
    ["model", "stage"],
    buckets=LATENCY_BUCKETS_SECONDS,
)
PAYLOAD_BYTES = Histogram(
    "duet_payload_bytes", "Size of the request's input tensors.", ["model"], buckets=PAYLOAD_BUCKETS_BYTES
)
STUDY_IMAGES = Histogram("duet_study_images", "Images per mammography study.", buckets=(1, 2, 3, 4))
PREDICTOR_RETRIES = Counter(
    "duet_predictor_retries", "Predictor calls retried after UNAVAILABLE, by Triton model name.", ["model"]
)
INFLIGHT = Gauge("duet_inflight_requests", "Requests being processed now.", ["model"], multiprocess_mode="livesum")
RESERVED_MEMORY = Gauge(
    "duet_reserved_memory_bytes", "Memory reserved by the studies being prepared now (estimated from their headers).",
    ["model"], multiprocess_mode="livesum",
)
DECODED_IMAGES = Counter("duet_decoded_images", "DICOM images decoded, by transfer syntax.", ["transfer_syntax"])


@contextmanager
def stage(model: str, name: str) -> Iterator[None]:
    """Time a pipeline stage into `duet_stage_duration_seconds{model, stage}`."""
    started = time.perf_counter()
    try:
        yield
    finally:
        STAGE_SECONDS.labels(model, name).observe(time.perf_counter() - started)


def code_class(status: int) -> str:
    """The bounded label value for an HTTP status: "2xx", "4xx" or "5xx"."""
    return f"{status // 100}xx"
