"""`duet up` as a user runs it, with its output going to a file (as under systemd or in a container).

Every line it writes is one JSON object, children's lines byte for byte; SIGTERM fails readiness first, lets the
requests in flight finish, then exits with no process of its children left.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from kserve import InferenceGRPCClient, InferInput, InferRequest
from process_tree import alive, descendants

from duet.local.stack import free_ports
from duet.paths import ROOT

from .conftest import model_repository

pytestmark = pytest.mark.integration

BODY = json.dumps({"inputs": [{"name": "text", "shape": [8], "datatype": "BYTES",
                               "data": [f"Headline {i}: markets move as traders weigh the outlook"
                                        for i in range(8)]}]})
CONCURRENT = 4
TOKEN = "duet-test-token"  # duet up runs with --bearer-token: every inference request must carry it
AUTH = {"authorization": f"Bearer {TOKEN}"}
UPLOAD_SECONDS = 3.0  # each client sends its body over this long: requests surely in flight at SIGTERM


def _slow_body(started: threading.Event) -> Iterator[bytes]:
    """The body in pieces, slowly (chunked transfer encoding), like a client on a slow link."""
    data = BODY.encode()
    pieces = 20
    size = -(-len(data) // pieces)
    for start in range(0, len(data), size):
        yield data[start:start + size]
        started.set()
        time.sleep(UPLOAD_SECONDS / pieces)


def _start_duet_up(run_dir: Path) -> dict:
    """`duet up` serving sentiment behind Triton on free ports, its output to a file; returns once it is ready."""
    http, grpc, t_http, t_grpc, t_metrics = free_ports(5)
    with (run_dir / "stdout").open("wb") as stdout:
        process = subprocess.Popen(
            [sys.executable, "-m", "duet.cli", "up", "--model=sentiment", "--predictor=triton",
             f"--http-port={http}", f"--grpc-port={grpc}", f"--triton-http-port={t_http}",
             f"--triton-grpc-port={t_grpc}", f"--triton-metrics-port={t_metrics}", f"--run-dir={run_dir}",
             f"--model-repository={model_repository()}", f"--bearer-token={TOKEN}"],
            stdout=stdout, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    url = f"http://127.0.0.1:{http}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/v2/models/sentiment/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.25)
    if process.poll() is not None:
        raise AssertionError((run_dir / "stdout").read_text()[-3000:])
    return {"process": process, "url": url, "grpc": f"127.0.0.1:{grpc}", "run_dir": run_dir,
            "stdout": run_dir / "stdout"}


@pytest.fixture(scope="module")
def duet_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    started = _start_duet_up(tmp_path_factory.mktemp("duet-up"))
    try:
        yield started
    finally:
        if started["process"].poll() is None:
            started["process"].send_signal(signal.SIGTERM)
            started["process"].wait(timeout=120)


def test_bearer_token_is_required_on_rest_and_grpc_when_set(duet_up: dict) -> None:
    url = duet_up["url"]
    body = json.loads(BODY)
    without = httpx.post(f"{url}/v2/models/sentiment/infer", json=body, timeout=30)
    assert without.status_code == 401 and "Bearer" in without.json()["error"]
    assert httpx.post(f"{url}/v2/models/sentiment/infer", json=body, headers=AUTH, timeout=30).status_code == 200
    assert httpx.get(f"{url}/metrics", timeout=30).status_code == 200  # scrapers and probes carry no token

    async def grpc_call(metadata: tuple) -> grpc.StatusCode:
        client = InferenceGRPCClient(duet_up["grpc"], timeout=60)
        tensor = InferInput("text", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([b"Harbour reopens"], dtype=object), binary_data=True)
        try:
            await client.infer(InferRequest(model_name="sentiment", infer_inputs=[tensor]), headers=metadata)
            return grpc.StatusCode.OK
        except grpc.aio.AioRpcError as error:
            return error.code()
        finally:
            await client.close()

    assert asyncio.run(grpc_call(())) == grpc.StatusCode.UNAUTHENTICATED
    assert asyncio.run(grpc_call((("authorization", f"Bearer {TOKEN}"),))) == grpc.StatusCode.OK


def test_sigterm_fails_readiness_drains_in_flight_requests_then_exits_clean(duet_up: dict) -> None:
    process, url = duet_up["process"], duet_up["url"]
    # A request that fails, so the transformer writes a warning line of its own.
    failing = httpx.post(f"{url}/v2/models/sentiment/infer", json={"not": "v2"}, headers=AUTH, timeout=30)
    assert failing.status_code == 400
    children = descendants(process.pid)
    assert len(children) >= 3, "expected Triton, its Python-backend stub and the transformer"

    answers: list[int | str] = []
    started = [threading.Event() for _ in range(CONCURRENT)]

    def send(started: threading.Event) -> None:
        try:
            reply = httpx.post(f"{url}/v2/models/sentiment/infer", content=_slow_body(started),
                               headers={"content-type": "application/json", **AUTH}, timeout=120)
            answers.append(reply.status_code)
        except httpx.HTTPError as error:
            answers.append(repr(error))

    clients = [threading.Thread(target=send, args=(event,)) for event in started]
    for client in clients:
        client.start()
    assert all(event.wait(30) for event in started), "the requests did not start"

    process.send_signal(signal.SIGTERM)
    readiness_failed_while_busy = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            ready = httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            ready = False
        if not ready:
            readiness_failed_while_busy = len(answers) < CONCURRENT
            break
        time.sleep(0.02)
    for client in clients:
        client.join()
    assert process.wait(timeout=120) == 0
    assert readiness_failed_while_busy, "readiness should fail before the in-flight requests finish"
    assert answers == [200] * CONCURRENT, answers
    survivors = [pid for pid in children if alive(pid)]
    assert survivors == [], f"processes of duet up outlived it: {survivors}"


def test_output_off_a_terminal_is_one_json_object_per_line_with_children_lines_untouched(duet_up: dict) -> None:
    # Runs after the SIGTERM test (module order): duet up has exited and flushed everything.
    process = duet_up["process"]
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    lines = duet_up["stdout"].read_bytes().splitlines()
    assert lines, "duet up wrote nothing"
    for line in lines:
        assert isinstance(json.loads(line), dict), line[:300]
    assert not any(b"[dim]" in line or b"[/]" in line for line in lines)
    transformer_lines = set((duet_up["run_dir"] / "transformer.log").read_bytes().splitlines())
    passed = [line for line in lines if line in transformer_lines]
    assert any(b"request failed: 400" in line for line in passed), "the transformer's warning was not passed through"
    # The longest child line is passed whole, not re-wrapped at 80 columns.
    assert max(len(line) for line in passed) > 80
    messages = [json.loads(line) for line in lines if json.loads(line).get("logger") == "duet.up"]
    assert any(m["message"] == "duet is up" and m["models"] == ["sentiment"] for m in messages)
    assert messages[-1]["message"] == "stopped."
    wrapped = [json.loads(line) for line in lines if json.loads(line).get("logger") == "predictor"]
    assert wrapped, "Triton's own lines should be wrapped in JSON objects"


def test_sighup_stops_the_stack_in_order_too(tmp_path: Path) -> None:
    # A closed terminal or ssh session: duet up must not die and orphan Triton (the children are in their own
    # sessions, so only duet up gets the hang-up).
    started = _start_duet_up(tmp_path)
    process = started["process"]
    children = descendants(process.pid)
    assert children
    process.send_signal(signal.SIGHUP)
    assert process.wait(timeout=120) == 0
    assert [pid for pid in children if alive(pid)] == []
    assert json.loads(started["stdout"].read_bytes().splitlines()[-1])["message"] == "stopped."


def test_duet_up_killed_outright_takes_its_children_down(tmp_path: Path) -> None:
    # SIGKILL leaves duet up no chance to stop anything: its children must notice (parent-death signal) and stop.
    started = _start_duet_up(tmp_path)
    process = started["process"]
    children = descendants(process.pid)
    assert len(children) >= 3
    process.kill()
    process.wait(timeout=30)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and any(alive(pid) for pid in children):
        time.sleep(0.5)
    assert [pid for pid in children if alive(pid)] == []
