"""The locust run sends the Host header KServe routes by (DUET_HOST_HEADER): real locust, real HTTP.

The server is a stand-in for an ingress: it records the Host of every request and answers with a response that
meets the sentiment contract, so locust's checks pass and only the header is under test.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from duet.paths import ROOT

pytestmark = pytest.mark.slow  # a locust child interpreter: seconds per test on 2 cores

SENTIMENT_REPLY = json.dumps({
    "model_name": "sentiment",
    "outputs": [
        {"name": "probabilities", "datatype": "FP32", "shape": [1, 3], "data": [0.1, 0.2, 0.7]},
        {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["positive"]},
        {"name": "entropy", "datatype": "FP32", "shape": [1], "data": [0.8]},
    ],
}).encode()


class RecordingIngress(ThreadingHTTPServer):
    hosts: list[str]


class Handler(BaseHTTPRequestHandler):
    server: RecordingIngress

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.hosts.append(self.headers.get("Host", ""))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(SENTIMENT_REPLY)))
        self.end_headers()
        self.wfile.write(SENTIMENT_REPLY)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def ingress() -> Iterator[RecordingIngress]:
    server = RecordingIngress(("127.0.0.1", 0), Handler)
    server.hosts = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run_locust(ingress: RecordingIngress, tmp_path: Path, env: dict[str, str]) -> int:
    port = ingress.server_address[1]
    completed = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"), "--headless",
         "--host", f"http://127.0.0.1:{port}", "-u", "1", "-r", "1", "-t", "5s", "--only-summary",
         "--csv", str(tmp_path / "run"), "SentimentUser"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True, timeout=120,
        check=False,
    )
    rows = {row["Name"]: row for row in csv.DictReader((tmp_path / "run_stats.csv").open())}
    sentiment = rows.get("sentiment", {"Failure Count": "0", "Request Count": "0"})
    assert int(sentiment["Failure Count"]) == 0, completed.stdout + completed.stderr
    assert int(sentiment["Request Count"]) > 0, completed.stdout + completed.stderr
    return int(sentiment["Request Count"])


def test_the_host_header_names_the_model_inferenceservice(ingress: RecordingIngress, tmp_path: Path) -> None:
    sent = run_locust(ingress, tmp_path, {"DUET_HOST_HEADER": "{model}-predictor.duet.example.org"})
    assert sent > 0
    assert set(ingress.hosts) == {"sentiment-predictor.duet.example.org"}


def test_without_it_the_host_is_the_target_s_own(ingress: RecordingIngress, tmp_path: Path) -> None:
    run_locust(ingress, tmp_path, {"DUET_HOST_HEADER": ""})
    assert set(ingress.hosts) == {f"127.0.0.1:{ingress.server_address[1]}"}
