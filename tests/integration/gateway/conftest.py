"""Real peers for the gateway's tests: the gateway as its own process (`python -m gateway`), the mammography
stack started by `duet up`'s code path, dcmtk's storescu/echoscu/storescp, and synthetic studies on disk."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from duet.local.stack import LocalStack, free_ports
from duet.paths import ROOT
from duet.synthetic_dicom import synth_study, write_study

from ..conftest import require_built, start_stack

pytestmark = pytest.mark.integration


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (Debian package {package}; .ci/run installs it)")
    return path


class GatewayProcess:
    """`python -m gateway` with DUET_GATEWAY_* settings, on free ports; kill() is SIGKILL, start() restarts
    it on the same spool and ports."""

    def __init__(self, run_dir: Path, **settings: object) -> None:
        self.run_dir = run_dir
        self.port, self.http_port = free_ports(2)
        self.settings = {
            "AE_TITLE": "DUET",
            "HOST": "127.0.0.1",
            "PORT": self.port,
            "HTTP_PORT": self.http_port,
            "SPOOL_DIR": run_dir / "spool",
            "STABLE_SECONDS": 2,
            "RETRY_BASE_SECONDS": 0.5,
            **settings,
        }
        self.process: subprocess.Popen | None = None
        self.log = run_dir / "gateway.log"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout_s: float = 30) -> GatewayProcess:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            **{f"DUET_GATEWAY_{key}": str(value) for key, value in self.settings.items()},
        }
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"gateway exited with {self.process.returncode}: {self.log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{self.http}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gateway not ready: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def studies(self, state: str = "") -> list[dict]:
        params = (
            {"state": state}
            if state
            else {"state": "receiving,pending,dispatched,exported,failed,dead_letter"}
        )
        return httpx.get(f"{self.http}/api/studies", params=params, timeout=5).json()["studies"]

    def wait_for(self, state: str, count: int = 1, timeout_s: float = 120) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            studies = self.studies(state)
            if len(studies) >= count:
                return studies
            time.sleep(0.2)
        raise AssertionError(
            f"not {count} studies {state} after {timeout_s}s: {self.studies()}\n"
            f"{self.log.read_text()[-3000:]}"
        )

    def metrics(self) -> str:
        return httpx.get(f"{self.http}/metrics", timeout=5).text


class StoreSCP:
    """dcmtk's storescp as a destination: every object it receives becomes a file in `folder` (a unique name
    each time, so a second delivery of one SOP instance shows as a second file)."""

    def __init__(self, folder: Path, ae_title: str = "PACS") -> None:
        self.folder = folder
        self.ae_title = ae_title
        self.port = free_ports(1)[0]
        self.process: subprocess.Popen | None = None

    @property
    def destination(self) -> str:
        return f"{self.ae_title}@127.0.0.1:{self.port}"

    def start(self) -> StoreSCP:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                require_binary("storescp", "dcmtk"),
                "-aet",
                self.ae_title,
                "+xa",
                "+uf",
                "-od",
                str(self.folder),
                str(self.port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if (
                subprocess.run(
                    ["echoscu", "-aec", self.ae_title, "127.0.0.1", str(self.port)],
                    check=False,
                    capture_output=True,
                ).returncode
                == 0
            ):
                return self
            time.sleep(0.1)
        raise RuntimeError("storescp did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait()

    def received(self) -> list[Path]:
        return sorted(path for path in self.folder.iterdir() if path.is_file())

    def wait_for(self, count: int, timeout_s: float = 120) -> list[Path]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(self.received()) >= count:
                return self.received()
            time.sleep(0.2)
        raise AssertionError(
            f"{len(self.received())} objects at the destination after {timeout_s}s, expected {count}"
        )


def storescu(
    gateway_port: int,
    files: list[Path],
    calling_ae: str = "MODALITY",
    called_ae: str = "DUET",
    extra: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            require_binary("storescu", "dcmtk"),
            "-aet",
            calling_ae,
            "-aec",
            called_ae,
            *extra,
            "127.0.0.1",
            str(gateway_port),
            *map(str, files),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="session")
def mammography_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The mammography transformer and the ONNX Runtime predictor, started as `duet up` starts them."""
    stack = start_stack(
        tmp_path_factory.mktemp("gateway-stack"), "onnxruntime", require_built(("mammography",))
    )
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def study_files(tmp_path: Path, request: pytest.FixtureRequest) -> list[Path]:
    """A 4-view synthetic study (seeded per test, so every test has its own Study Instance UID)."""
    seed = 1000 + sum(map(ord, request.node.name)) % 10000
    folder = tmp_path / "study"
    write_study(synth_study(seed, images=4), folder)
    return sorted(folder.glob("*.dcm"))


@pytest.fixture
def destination(tmp_path: Path) -> Iterator[StoreSCP]:
    scp = StoreSCP(tmp_path / "destination").start()
    try:
        yield scp
    finally:
        scp.stop()


@pytest.fixture
def gateway_factory(tmp_path: Path) -> Iterator:
    started: list[GatewayProcess] = []

    def make(**settings: object) -> GatewayProcess:
        process = GatewayProcess(tmp_path / f"gateway{len(started)}", **settings)
        started.append(process)
        return process

    yield make
    for process in started:
        process.stop()


class Orthanc:
    """Debian's Orthanc with the DICOMweb plugin as a PACS on 127.0.0.1, in its own folder and config."""

    def __init__(self, folder: Path, ae_title: str = "ORTHANC") -> None:
        self.folder = folder
        self.ae_title = ae_title
        self.port, self.http_port = free_ports(2)
        self.process: subprocess.Popen | None = None
        self.modalities: dict[str, list] = {}

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def destination(self) -> str:
        return f"{self.ae_title}@127.0.0.1:{self.port}"

    def start(self, modalities: dict[str, tuple[str, int]]) -> Orthanc:
        import json

        binary = require_binary("Orthanc", "orthanc")
        plugin = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
        if not plugin.exists():
            pytest.skip("Orthanc's DICOMweb plugin not installed (Debian package orthanc-dicomweb)")
        self.folder.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "duet-test",
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "index"),
            "DicomAet": self.ae_title,
            "DicomPort": self.port,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [str(plugin)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "DicomModalities": {name: [ae, "127.0.0.1", port] for name, (ae, port) in modalities.items()},
        }
        (self.folder / "orthanc.json").write_text(json.dumps(config))
        self.process = subprocess.Popen(
            [binary, str(self.folder / "orthanc.json")],
            stdout=subprocess.DEVNULL,
            stderr=(self.folder / "orthanc.log").open("wb"),
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.http}/system", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("Orthanc did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait()
