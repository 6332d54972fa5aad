"""`duet up --build` (what `make up` runs) on a repository with nothing built: it serves sentiment as soon as
sentiment is built, while the detector is still building (mammography answers 503 "still being built"
meanwhile), then restarts to serve mammography (and the DICOM gateway, which needs it) too. Real quick builds
with an empty build cache, real Triton, real transformers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from process_tree import alive, descendants

from duet.local.stack import free_ports
from duet.paths import ROOT

pytestmark = pytest.mark.integration

DEADLINE_S = 600.0  # two quick builds and two stack starts on 2 busy cores


def _committed_repository(target: Path) -> Path:
    """The model repository as a fresh clone has it: configs, no built model."""
    listed = subprocess.run(["git", "ls-files", "models/model_repository"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.split()
    for name in listed:
        destination = target / Path(name).relative_to("models/model_repository")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, destination)
    return target


def _events(stdout: Path) -> list[dict]:
    entries = []
    for line in stdout.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries


def _wait_for(stdout: Path, process: subprocess.Popen, predicate, what: str) -> dict:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        for entry in _events(stdout):
            if predicate(entry):
                return entry
        if process.poll() is not None:
            break
        time.sleep(0.5)
    raise AssertionError(f"no {what}; duet up said:\n{stdout.read_text()[-4000:]}")


def _scraped_jobs(port: int, must_have: str) -> set[str]:
    """The jobs the local Prometheus scrapes, once `must_have` is among them or after 30 s (it applies its
    configuration asynchronously after a start or a reload)."""
    deadline = time.monotonic() + 30
    while True:
        targets = httpx.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        jobs = {target["labels"]["job"] for target in targets}
        if must_have in jobs or time.monotonic() > deadline:
            return jobs
        time.sleep(0.5)


def _start_duet_up_build(tmp_path: Path, ports: list[int], *flags: str) -> tuple[subprocess.Popen, Path, Path]:
    """`duet up --build --quick-build` on a repository with nothing built and an empty build cache (both models
    really build, as on a fresh machine), on `ports` (REST, gRPC, Triton's REST, gRPC and metrics), its output to
    a file; returns the process, that file and the repository."""
    repository = _committed_repository(tmp_path / "repository")
    http, grpc, t_http, t_grpc, t_metrics = ports
    stdout = tmp_path / "stdout"
    with stdout.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "duet.cli", "up", "--build", "--quick-build",
             f"--http-port={http}", f"--grpc-port={grpc}", f"--triton-http-port={t_http}",
             f"--triton-grpc-port={t_grpc}", f"--triton-metrics-port={t_metrics}", f"--run-dir={tmp_path / 'run'}",
             f"--model-repository={repository}", *flags],
            stdout=output, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "DUET_CACHE_DIR": str(tmp_path / "cache")},
        )
    return process, stdout, repository


def test_duet_up_build_serves_each_model_as_soon_as_it_is_built(tmp_path: Path) -> None:
    *stack_ports, dimse, gateway_http, prometheus_port = free_ports(8)
    # With Debian's Prometheus, the local one too: it must scrape the gateway once, and only once, it runs.
    prometheus = ["--prometheus", f"--prometheus-port={prometheus_port}"] if shutil.which("prometheus") else []
    process, stdout, repository = _start_duet_up_build(
        tmp_path, stack_ports, "--predictor=triton", f"--gateway-port={dimse}", f"--gateway-http-port={gateway_http}",
        *prometheus)
    http = stack_ports[0]
    url = f"http://127.0.0.1:{http}"
    try:
        first = _wait_for(stdout, process, lambda e: e.get("message") == "duet is up", "first 'duet is up'")
        assert first["models"] == ["sentiment"] and "gateway_dimse" not in first
        messages = [entry.get("message", "") for entry in _events(stdout)]
        assert any(m.startswith("mammography: building") for m in messages), messages
        assert not any(m.startswith("mammography: ready") for m in messages[:messages.index("duet is up")])
        answer = httpx.post(f"{url}/v2/models/sentiment/infer", timeout=120, json={
            "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["Harbour reopens"]}]})
        assert answer.status_code == 200, answer.text
        # Mammography is named and says it is building: 503 with Retry-After, never "does not exist".
        building = httpx.post(f"{url}/v2/models/mammography/infer", timeout=30, json={
            "inputs": [{"name": "dicom", "shape": [1], "datatype": "BYTES", "data": ["AAAA"]}]})
        assert building.status_code == 503 and "retry-after" in building.headers, building.text
        assert "still being built" in building.json()["error"]
        assert httpx.get(f"{url}/v2/models/mammography/ready", timeout=10).status_code == 503
        # The build's progress goes through duet up's own output, one JSON object per line.
        assert any(entry.get("logger") == "build" for entry in _events(stdout))
        if prometheus:
            assert _scraped_jobs(prometheus_port, "duet-transformer") == {"duet-transformer", "duet-triton"}

        second = _wait_for(stdout, process, lambda e: e.get("message") == "duet is up"
                           and e.get("models") == ["mammography", "sentiment"], "'duet is up' with mammography")
        assert second["gateway_dimse"].endswith(f":{dimse}")
        for model in ("mammography", "sentiment"):
            assert httpx.get(f"{url}/v2/models/{model}/ready", timeout=10).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{gateway_http}/readyz", timeout=10).status_code == 200
        if prometheus:
            assert "duet-gateway" in _scraped_jobs(prometheus_port, "duet-gateway")
        card = json.loads((repository / "mammo_detector" / "card.json").read_text())
        assert card["quality_gates"]["passed"] is True
        children = descendants(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=120)
    assert code == 0, stdout.read_text()[-3000:]
    assert [pid for pid in children if alive(pid)] == []


def test_duet_up_build_stops_the_build_when_stopped_before_anything_is_served(tmp_path: Path) -> None:
    process, stdout, repository = _start_duet_up_build(tmp_path, free_ports(5), "--no-gateway")
    _wait_for(stdout, process, lambda e: str(e.get("message", "")).startswith("sentiment: building"),
              "sentiment build start")
    build = descendants(process.pid)
    assert build, "no build process under duet up"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, stdout.read_text()[-3000:]
    # Nothing of the build is left running, and nothing half-built was installed.
    assert [pid for pid in build if alive(pid)] == []
    assert not (repository / "sentiment" / "1" / "model.onnx").exists()
