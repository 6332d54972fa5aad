"""The local stack supervises its children: SIGKILL under load, real processes, real requests.

A killed predictor is restarted with backoff while the transformer answers 503 + Retry-After and is never
restarted itself; a killed transformer is restarted without touching the predictor; nothing of a dead child's
process tree survives it (Triton's Python-backend stubs, the decode workers).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Self

import grpc
import httpx
import numpy as np
import pytest
from kserve import InferenceGRPCClient, InferInput, InferRequest

from duet.local.stack import LocalStack, process_group_members

from .conftest import start_stack

pytestmark = pytest.mark.integration

BODY = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                    "data": ["Markets steady ahead of the rate decision", "Storm closes the harbour"]}]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = start_stack(tmp_path_factory.mktemp("supervised"), "triton", models=("sentiment",))
    try:
        yield stack
    finally:
        stack.stop()


@dataclass
class Answer:
    sent_at: float
    status: int | None  # None: no HTTP answer (the connection failed)
    retry_after: str | None = None
    error: str = ""


@dataclass
class Load:
    """A few clients sending sentiment requests in a loop, each answer recorded."""

    url: str
    clients: int = 4
    answers: list[Answer] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Self:
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(self.clients)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def _client(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self.stop.is_set():
                sent = time.monotonic()
                try:
                    reply = client.post(self.url, json=BODY)
                    self.answers.append(Answer(sent, reply.status_code, reply.headers.get("retry-after"),
                                               reply.text if reply.status_code != 200 else ""))
                except httpx.HTTPError as error:
                    self.answers.append(Answer(sent, None, error=repr(error)))
                time.sleep(0.02)

    def first_success_after(self, moment: float, timeout_s: float = 60) -> float | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            successes = [a.sent_at for a in list(self.answers) if a.status == 200 and a.sent_at >= moment]
            if successes:
                return min(successes)
            time.sleep(0.05)
        return None


def _wait(condition, timeout_s: float = 90, interval_s: float = 0.05) -> float:
    """Wait until `condition()` is true; the monotonic time it was first seen true."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        time.sleep(interval_s)
    raise AssertionError(f"not true within {timeout_s}s: {condition}")


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_predictor_killed_under_load_is_restarted_while_the_transformer_answers_503(stack: LocalStack) -> None:
    transformer_pid = stack.processes["transformer"].pid
    predictor_pid = stack.processes["predictor"].pid
    group_before = process_group_members(predictor_pid)
    assert len(group_before) >= 2, "Triton should run its Python-backend stub beside it"
    events_before = len(stack.events)
    with Load(f"{stack.transformer_http}/v2/models/sentiment/infer") as load:
        _wait(lambda: any(a.status == 200 for a in load.answers))
        os.kill(predictor_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        # The supervisor restarts it: a new process, ready on the same ports.
        _wait(lambda: stack.processes.get("predictor") is not None
              and stack.processes["predictor"].pid != predictor_pid)
        ready_at = _wait(lambda: _ready(f"{stack.triton_http}/v2/health/ready"))
        back_at = load.first_success_after(ready_at)
    assert back_at is not None, "no request succeeded after the predictor came back"
    assert back_at - ready_at <= 5.0, f"service returned {back_at - ready_at:.1f}s after the predictor was ready"

    during = [a for a in load.answers if killed_at <= a.sent_at < ready_at]
    failures = [a for a in load.answers if a.status != 200]
    assert all(a.status == 503 for a in failures), [(a.status, a.error[:200]) for a in failures]
    assert all(a.retry_after == "1" for a in failures), "every 503 must carry Retry-After"
    assert any(a.status == 503 for a in during), "the outage was not seen: no 503 while the predictor was down"
    assert all('"error"' in a.error and "unavailable" in a.error for a in failures)

    assert stack.processes["transformer"].pid == transformer_pid, "the transformer must not restart"
    assert process_group_members(predictor_pid) == [], "part of the killed predictor's tree survived it"
    _wait(lambda: any(e.kind == "ready" for e in stack.events[events_before:]), timeout_s=30)
    kinds = [(e.process, e.kind) for e in stack.events[events_before:]]
    assert kinds[:3] == [("predictor", "exited"), ("predictor", "restarting"), ("predictor", "ready")], kinds


def test_transformer_killed_is_restarted_without_touching_the_predictor(stack: LocalStack) -> None:
    predictor_pid = stack.processes["predictor"].pid
    transformer_pid = stack.processes["transformer"].pid
    url = f"{stack.transformer_http}/v2/models/sentiment/infer"
    os.kill(transformer_pid, signal.SIGKILL)
    _wait(lambda: stack.processes.get("transformer") is not None
          and stack.processes["transformer"].pid != transformer_pid)
    _wait(lambda: _ready(f"{stack.transformer_http}/v2/models/sentiment/ready"), timeout_s=120)
    assert httpx.post(url, json=BODY, timeout=60).status_code == 200
    assert stack.processes["predictor"].pid == predictor_pid
    assert process_group_members(transformer_pid) == []
    assert any(e.process == "transformer" and e.kind == "exited" and "code -9" in e.message for e in stack.events)


def test_a_child_that_keeps_dying_is_restarted_with_growing_backoff(stack: LocalStack) -> None:
    starts = []
    for _ in range(3):
        pid = stack.processes["predictor"].pid if "predictor" in stack.processes else None
        if pid is None:
            _wait(lambda: "predictor" in stack.processes)
            pid = stack.processes["predictor"].pid
        os.kill(pid, signal.SIGKILL)
        _wait(lambda p=pid: "predictor" in stack.processes and stack.processes["predictor"].pid != p)
        starts.append(time.monotonic())
    delays = [e.message for e in stack.events if e.process == "predictor" and e.kind == "exited"][-3:]
    backoffs = [float(message.split("restarting in ")[1].split("s")[0]) for message in delays]
    assert backoffs == sorted(backoffs) and backoffs[-1] > backoffs[0], backoffs
    _wait(lambda: _ready(f"{stack.triton_http}/v2/health/ready"))
    _wait(lambda: httpx.post(f"{stack.transformer_http}/v2/models/sentiment/infer", json=BODY, timeout=60)
          .status_code == 200, timeout_s=30, interval_s=0.5)


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on `port` (from /proc/net/tcp and tcp6; hex, as the kernel
    writes them)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            next(handle)
            for row in handle:
                local, state = row.split()[1], row.split()[3]
                address, _, hex_port = local.partition(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    found.add(address)
    return found


def test_every_listener_binds_loopback_only(stack: LocalStack) -> None:
    # 127.0.0.1, ::1, and 127.0.0.1 as an IPv4-mapped IPv6 address (how gRPC binds an IPv4 address).
    loopback = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}
    config = stack.config
    for port in (config.http_port, config.grpc_port, config.triton.http, config.triton.grpc, config.triton.metrics):
        addresses = _listening_addresses(port)
        assert addresses, f"nothing listens on {port}"
        assert addresses <= loopback, f"port {port} listens on {addresses}"


def test_grpc_unavailable_carries_retry_after_trailing_metadata(stack: LocalStack) -> None:
    async def call() -> grpc.aio.AioRpcError | None:
        client = InferenceGRPCClient(stack.transformer_grpc, timeout=60)
        tensor = InferInput("text", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([b"Harbour reopens"], dtype=object), binary_data=True)
        try:
            await client.infer(InferRequest(model_name="sentiment", infer_inputs=[tensor]))
        except grpc.aio.AioRpcError as error:
            return error
        finally:
            await client.close()
        return None

    stack.stop_predictor()  # on purpose: the supervisor leaves it down
    try:
        error = asyncio.run(call())
    finally:
        stack.start_predictor()
    assert error is not None and error.code() == grpc.StatusCode.UNAVAILABLE
    assert ("retry-after", "1") in tuple(error.trailing_metadata() or ())
    assert asyncio.run(call()) is None


def _slow_upload(body: bytes, started: threading.Event, seconds: float = 3.0, pieces: int = 20) -> Iterator[bytes]:
    """`body` in pieces over `seconds` (chunked), like a client on a slow link: surely in flight meanwhile."""
    size = -(-len(body) // pieces)
    for start in range(0, len(body), size):
        yield body[start:start + size]
        started.set()
        time.sleep(seconds / pieces)


def test_sigterm_to_the_transformer_alone_drains_its_in_flight_requests(stack: LocalStack) -> None:
    process = stack.processes["transformer"]
    url = f"{stack.transformer_http}/v2/models/sentiment/infer"
    answers: list[int | str] = []
    started = [threading.Event() for _ in range(3)]

    def send(event: threading.Event) -> None:
        try:
            reply = httpx.post(url, content=_slow_upload(json.dumps(BODY).encode(), event),
                               headers={"content-type": "application/json"}, timeout=120)
            answers.append(reply.status_code)
        except httpx.HTTPError as error:
            answers.append(repr(error))

    clients = [threading.Thread(target=send, args=(event,)) for event in started]
    for client in clients:
        client.start()
    assert all(event.wait(30) for event in started)
    process.send_signal(signal.SIGTERM)
    _wait(lambda: not _ready(f"{stack.transformer_http}/v2/health/ready"), timeout_s=10)
    assert len(answers) < len(clients), "readiness should fail while the requests are still in flight"
    for client in clients:
        client.join()
    assert process.wait(timeout=60) == 0
    assert answers == [200] * len(clients), answers
    # An exit the supervisor did not ask for: the transformer comes back.
    _wait(lambda: _ready(f"{stack.transformer_http}/v2/models/sentiment/ready"), timeout_s=120)
