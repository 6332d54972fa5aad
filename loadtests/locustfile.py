"""Load test of duet's public models over v2 REST.

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8080 --headless -u 16 -r 4 -t 1m

Users: `SentimentUser` (batches of headlines, JSON) and `MammographyUser` (4-view studies, binary tensors).
Pick with `--class-picker` or by name on the command line, e.g. `... SentimentUser`. Tunables (environment):
DUET_SENTIMENT_BATCH (texts per request, 8), DUET_STUDY_SIZE (rows x columns, "2048x1664"), DUET_STUDY_SYNTAX
("explicit", "j2k", ...). Pass/fail thresholds (checked at the end; a breach makes locust exit 1):
DUET_MAX_FAILURE_RATIO (0.01), DUET_MAX_P99_MS_SENTIMENT (500), DUET_MAX_P99_MS_MAMMOGRAPHY (10000).
"""

from __future__ import annotations

import itertools
import os

from locust import HttpUser, between, events, task

from loadtests.payloads import binary_bytes_body, headlines, mammography_study, sentiment_body

SENTIMENT_BATCH = int(os.environ.get("DUET_SENTIMENT_BATCH", "8"))
HEADLINES = headlines(4096)
THRESHOLDS = {
    "failure_ratio": float(os.environ.get("DUET_MAX_FAILURE_RATIO", "0.01")),
    "sentiment": float(os.environ.get("DUET_MAX_P99_MS_SENTIMENT", "500")),
    "mammography": float(os.environ.get("DUET_MAX_P99_MS_MAMMOGRAPHY", "10000")),
}


class SentimentUser(HttpUser):
    wait_time = between(0.0, 0.05)

    def on_start(self) -> None:
        self._offsets = itertools.count(0, SENTIMENT_BATCH)

    @task
    def score_headlines(self) -> None:
        start = next(self._offsets) % (len(HEADLINES) - SENTIMENT_BATCH)
        with self.client.post("/v2/models/sentiment/infer", json=sentiment_body(HEADLINES[start:start + SENTIMENT_BATCH]),
                              name="sentiment", catch_response=True) as reply:
            if reply.status_code != 200:
                reply.failure(f"HTTP {reply.status_code}: {reply.text[:200]}")


class MammographyUser(HttpUser):
    wait_time = between(0.0, 0.2)
    _study: tuple[bytes, dict] | None = None

    def on_start(self) -> None:
        if MammographyUser._study is None:
            rows, columns = (int(v) for v in os.environ.get("DUET_STUDY_SIZE", "2048x1664").split("x"))
            files = mammography_study(seed=7, rows=rows, columns=columns,
                                      syntax=os.environ.get("DUET_STUDY_SYNTAX", "explicit"))
            MammographyUser._study = binary_bytes_body("dicom", files)

    @task
    def read_study(self) -> None:
        body, headers = MammographyUser._study
        with self.client.post("/v2/models/mammography/infer", data=body, headers=headers,
                              name="mammography", catch_response=True) as reply:
            if reply.status_code != 200:
                reply.failure(f"HTTP {reply.status_code}: {reply.text[:200]}")


@events.quitting.add_listener
def check_thresholds(environment, **_: object) -> None:
    """Fail the run (exit code 1) when the failure ratio or a model's p99 is over its threshold."""
    stats = environment.stats
    breaches = []
    if stats.total.num_requests and stats.total.fail_ratio > THRESHOLDS["failure_ratio"]:
        breaches.append(f"failure ratio {stats.total.fail_ratio:.3f} > {THRESHOLDS['failure_ratio']}")
    for name in ("sentiment", "mammography"):
        entry = stats.get(name, "POST")
        if entry.num_requests:
            p99 = entry.get_response_time_percentile(0.99)
            if p99 > THRESHOLDS[name]:
                breaches.append(f"{name} p99 {p99:.0f} ms > {THRESHOLDS[name]:.0f} ms")
    if breaches:
        environment.process_exit_code = 1
        for breach in breaches:
            print(f"THRESHOLD BREACHED: {breach}")
