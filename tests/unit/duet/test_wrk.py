"""wrk's report parsed, its POST script, and a real wrk run against a small local HTTP server."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest

from duet import wrk

REPORT = """Running 2s test @ http://127.0.0.1:8080/v2/models/sentiment/infer
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    41.20ms   12.01ms 230.00ms   80.00%
    Req/Sec   390.12     40.00   450.00     70.00%
  Latency Distribution
     50%   38.50ms
     75%   45.00ms
     90%   55.00ms
     99%  196.00ms
  1561 requests in 2.00s, 300.00KB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:    780.50
Transfer/sec:    150.00KB
"""


def test_the_report_gives_throughput_percentiles_and_failures() -> None:
    report = wrk.parse_output(REPORT)
    assert report["requests"] == 1561 and report["rps"] == 780.5
    assert (report["p50_ms"], report["p99_ms"]) == (38.5, 196.0)
    assert report["failed"] == 7


def test_latencies_in_every_unit_are_milliseconds() -> None:
    text = REPORT.replace("38.50ms", "850.00us").replace("196.00ms", "1.50s")
    report = wrk.parse_output(text)
    assert (report["p50_ms"], report["p99_ms"]) == (0.85, 1500.0)


def test_what_is_not_a_report_is_refused() -> None:
    with pytest.raises(ValueError, match="not a wrk report"):
        wrk.parse_output("unable to connect to 127.0.0.1:1 Connection refused")


def test_the_script_posts_the_body_verbatim_with_its_headers() -> None:
    body = b'{"inputs": [{"data": ["a ]] b ]=] c"]}]}'
    script = wrk.post_script(body, {"content-type": "application/json"})
    assert 'wrk.method = "POST"' in script
    assert '[==[{"inputs": [{"data": ["a ]] b ]=] c"]}]}]==]' in script  # a delimiter the body does not hold
    assert 'wrk.headers["content-type"] = "application/json"' in script


class _Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        if len(self.bodies) < 5:
            self.bodies.append(body)
        self.send_response(200 if self.headers["content-type"] == "application/json" else 415)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def echo_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/infer"
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(not wrk.available(), reason="wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
def test_a_real_run_posts_the_body_and_counts_requests_and_its_own_cpu(echo_server: str) -> None:
    run = wrk.run(echo_server, b'{"x": 1}', {"content-type": "application/json"}, connections=2, seconds=1)
    assert run.requests > 0 and run.rps > 0 and run.ok
    assert run.client_cpu_ms > 0
    assert _Echo.bodies[0] == b'{"x": 1}'
