"""Load test of duet's public models over v2 REST.

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8080 --headless -u 16 -r 4 -t 1m SentimentUser
    DUET_SHAPE=step locust -f loadtests/locustfile.py --host https://duet.example.org --headless SentimentUser
    locust -f loadtests/locustfile.py --host ... --headless --processes 4 -u 256 -r 32 -t 5m   # distributed

Users: `SentimentUser` (headlines, JSON) and `MammographyUser` (4-view studies, binary tensors); pick one by name
on the command line. Every response is checked, not only its status: the outputs must be there with the shapes
and datatypes of the v2 contract. Overload (429) and predictor-unavailable (503) are their own failure kinds, so
the report separates "duet said slow down" from "duet broke".

Tunables (environment): DUET_SENTIMENT_BATCH (texts per request, 1), DUET_THINK_SECONDS (upper bound of the
random wait between a user's requests, both users: 0.05; 0 = closed loop), DUET_STUDY_SIZE (rows x columns,
"2048x1664"), DUET_STUDY_SYNTAX ("explicit", "j2k", ...), DUET_SHAPE (step, spike or soak: a `LoadTestShape`
that overrides -u/-r/-t; see `shapes.py`), DUET_HOST_HEADER (the Host header KServe routes an InferenceService
by, with `{model}` standing for the model's name: "{model}-predictor.duet.example.org"; unset: the --host's
own). Pass/fail thresholds live in `THRESHOLDS`, checked when locust quits; a breach makes locust exit 1. They
default to duet's service objectives (`charts/duet/files/objectives.yaml`, the numbers the alerts use; today
1% failures, p99 250 ms sentiment, 6000 ms mammography); DUET_MAX_FAILURE_RATIO, DUET_MAX_P99_MS_SENTIMENT and
DUET_MAX_P99_MS_MAMMOGRAPHY override them for one run.
"""

from __future__ import annotations

import itertools
import os

from locust import between, constant, events, task
from locust.contrib.fasthttp import FastHttpUser, ResponseContextManager

from loadtests.checks import check_tensor, outputs_by_name
from loadtests.objectives import load_objectives
from loadtests.payloads import headlines, mammography_body, mammography_study, sentiment_body
from loadtests.shapes import selected_shape

SENTIMENT_BATCH = int(os.environ.get("DUET_SENTIMENT_BATCH", "1"))
THINK_SECONDS = float(os.environ.get("DUET_THINK_SECONDS", "0.05"))
HEADLINES = headlines(4096)
OBJECTIVES = load_objectives()
# The defaults are the objectives the alerts page on: a run passes only if the deployment meets them.
THRESHOLDS = {
    "failure_ratio": float(os.environ.get("DUET_MAX_FAILURE_RATIO", OBJECTIVES.error_ratio)),
    **{model: float(os.environ.get(f"DUET_MAX_P99_MS_{model.upper()}", 1000 * seconds))
       for model, seconds in OBJECTIVES.latency_p99_seconds.items()},
}
HOST_HEADER = os.environ.get("DUET_HOST_HEADER", "")
# Failure kinds by status: locust groups failures by message, so these stay fixed strings.
FAILURE_KINDS = {429: "429 overloaded", 503: "503 predictor unavailable"}


def routing_headers(model: str) -> dict[str, str] | None:
    """The Host header that routes to `model`'s InferenceService behind a shared ingress (DUET_HOST_HEADER)."""
    return {"Host": HOST_HEADER.format(model=model)} if HOST_HEADER else None


def think_time():
    return constant(0) if THINK_SECONDS <= 0 else between(0.0, THINK_SECONDS)


def fail_on_status(reply: ResponseContextManager) -> bool:
    """Mark a non-200 reply failed, under its own kind for 429 and 503; True when it was one."""
    if reply.status_code == 200:
        return False
    kind = FAILURE_KINDS.get(reply.status_code)
    reply.failure(kind or f"HTTP {reply.status_code}: {(reply.text or '')[:120]}")
    return True


class SentimentUser(FastHttpUser):
    wait_time = think_time()
    default_headers = routing_headers("sentiment")

    def on_start(self) -> None:
        self._offsets = itertools.count(0, SENTIMENT_BATCH)

    @task
    def score_headlines(self) -> None:
        start = next(self._offsets) % (len(HEADLINES) - SENTIMENT_BATCH)
        texts = HEADLINES[start:start + SENTIMENT_BATCH]
        body, headers = sentiment_body(texts)
        with self.client.post("/v2/models/sentiment/infer", data=body, headers=headers, name="sentiment",
                              catch_response=True) as reply:
            if fail_on_status(reply):
                return
            try:
                outputs = outputs_by_name(reply)
                check_tensor(outputs, "probabilities", "FP32", [len(texts), 3])
                check_tensor(outputs, "label", "BYTES", [len(texts)])
                check_tensor(outputs, "entropy", "FP32", [len(texts)])
            except (ValueError, KeyError, TypeError) as error:
                reply.failure(f"bad response: {error}")


class MammographyUser(FastHttpUser):
    wait_time = think_time()
    default_headers = routing_headers("mammography")
    network_timeout = 120.0
    connection_timeout = 120.0
    _study: tuple[bytes, dict] | None = None
    _images = 4

    @classmethod
    def study(cls) -> tuple[bytes, dict]:
        """The one study every user sends (synthesised once: a large one takes seconds)."""
        if cls._study is None:
            rows, columns = (int(v) for v in os.environ.get("DUET_STUDY_SIZE", "2048x1664").split("x"))
            files = mammography_study(seed=7, images=cls._images, rows=rows, columns=columns,
                                      syntax=os.environ.get("DUET_STUDY_SYNTAX", "explicit"))
            cls._study = mammography_body(files)
        return cls._study

    @task
    def read_study(self) -> None:
        body, headers = self.study()
        with self.client.post("/v2/models/mammography/infer", data=body, headers=headers,
                              name="mammography", catch_response=True) as reply:
            if fail_on_status(reply):
                return
            try:
                outputs = outputs_by_name(reply)
                check_tensor(outputs, "boxes", "FP32", [None, 4])
                found = outputs["boxes"]["shape"][0]
                for name, datatype in (("scores", "FP32"), ("labels", "BYTES"), ("image_index", "INT32")):
                    check_tensor(outputs, name, datatype, [found])
                check_tensor(outputs, "quality", "FP32", [self._images])
                check_tensor(outputs, "risk", "FP32", [1])
            except (ValueError, KeyError, TypeError) as error:
                reply.failure(f"bad response: {error}")


SelectedShape = selected_shape(os.environ.get("DUET_SHAPE", ""))


@events.test_start.add_listener
def synthesise_the_study(environment, **_: object) -> None:
    """Build the study before the first user starts, so the run's clock and requests/s do not include it."""
    if MammographyUser in (environment.user_classes or []):
        MammographyUser.study()


@events.quitting.add_listener
def check_thresholds(environment, **_: object) -> None:
    """Fail the run (exit code 1) when the failure ratio or a model's p99 is over its threshold."""
    stats = environment.stats
    breaches = []
    if stats.total.num_requests and stats.total.fail_ratio > THRESHOLDS["failure_ratio"]:
        breaches.append(f"failure ratio {stats.total.fail_ratio:.3f} > {THRESHOLDS['failure_ratio']}")
    for name in OBJECTIVES.latency_p99_seconds:
        entry = stats.get(name, "POST")
        if entry.num_requests:
            p99 = entry.get_response_time_percentile(0.99)
            if p99 > THRESHOLDS[name]:
                breaches.append(f"{name} p99 {p99:.0f} ms > {THRESHOLDS[name]:.0f} ms")
    if breaches:
        environment.process_exit_code = 1
        for breach in breaches:
            print(f"THRESHOLD BREACHED: {breach}")
