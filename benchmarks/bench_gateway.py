"""The DICOM gateway against direct v2 calls, on a fresh local stack (mammography only, started here).

    python benchmarks/bench_gateway.py [--studies 12] [--rows 2048 --columns 1664] [--predictor auto]

1. latency: per 4-view study, the time from the last C-STORE response (pynetdicom SCU, one association) to the
   SR stored at the destination (dcmtk's storescp, found by polling its folder every 10 ms), against the same
   study sent directly to the transformer over v2 (binary tensors, `report: "sr"`). The 4 views complete the
   study at once, so there is no quiet period to subtract; the overhead goal is <= 25% of the direct time.
2. throughput: `--studies` studies through the gateway over 4 concurrent associations, until every SR is at
   the destination, against the same studies sent directly by 4 concurrent v2 clients (goal: >= 90% of the
   direct rate).
3. the gateway process's CPU seconds and peak RSS per study over the throughput run (psutil). Prints a
   Markdown section; `--markdown PATH` appends it to PATH. Goals are reported, never asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Self

import httpx
import psutil
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import DigitalMammographyXRayImageStorageForPresentation

from duet.local.gateway import LocalGatewayConfig
from duet.local.stack import LocalStack, StackConfig, free_ports
from duet.local.triton import TritonPorts
from duet.paths import MODEL_REPOSITORY
from duet.synthetic_dicom import synth_study
from duet.v2 import bytes_input, request_body
from gateway.dispatch import post_body


def send_study(port: int, study: list[bytes]) -> float:
    """C-STORE one study over one association; the monotonic time of the last C-STORE response."""
    ae = AE(ae_title="BENCH")
    ae.maximum_pdu_size = 4 * 1024 * 1024
    # The files' own transfer syntax, as dcmtk's storescu proposes it first (pynetdicom's default list starts with
    # Implicit VR, which the sender would convert to and the transformer reads more slowly).
    ae.add_requested_context(DigitalMammographyXRayImageStorageForPresentation, [ExplicitVRLittleEndian])
    association = ae.associate("127.0.0.1", port, ae_title="DUET")
    assert association.is_established, "association refused"
    try:
        for data in study:
            status = association.send_c_store(dcmread(DicomBytesIO(data)))
            assert status.Status == 0, f"C-STORE status 0x{status.Status:04X}"
        last_response = time.monotonic()
    finally:
        association.release()
    return last_response


def direct_v2(url: str, study: list[bytes], whole_body: bool = False) -> float:
    """One study as a v2 client sends it; the time includes building the request, as the gateway's does.
    The body goes in chunks, as the gateway sends it; `whole_body`: as one bytes object (httpx's default use,
    whose cost grows with the square of the body's size)."""
    started = time.monotonic()
    body, headers = request_body(
        [bytes_input("dicom", study)], outputs=["report"], parameters={"report": "sr"}, binary_outputs=True
    )
    with httpx.Client(timeout=600) as client:
        endpoint = f"{url}/v2/models/mammography/infer"
        if whole_body:
            response = client.post(endpoint, content=body, headers=headers)
        else:
            response = post_body(client, endpoint, body, headers)
    response.raise_for_status()
    return time.monotonic() - started


def stage_means(metrics_text: str) -> dict[str, float]:
    """Mean seconds per stage from duet_gateway_stage_seconds (over the whole run)."""
    sums, counts = {}, {}
    for line in metrics_text.splitlines():
        for suffix, into in (("_sum", sums), ("_count", counts)):
            prefix = f"duet_gateway_stage_seconds{suffix}{{stage=\""
            if line.startswith(prefix):
                stage = line[len(prefix) :].split('"', 1)[0]
                into[stage] = float(line.rsplit(" ", 1)[1])
    return {stage: sums[stage] / counts[stage] for stage in sums if counts.get(stage)}


def wait_for_files(folder: Path, count: int, timeout_s: float = 600) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sum(1 for _ in folder.iterdir()) >= count:
            return time.monotonic()
        time.sleep(0.01)
    raise TimeoutError(f"{count} SRs did not arrive in {timeout_s}s")


class Sampler:
    """Peak RSS of a process, sampled every 50 ms."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=12)
    parser.add_argument("--latency-repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--columns", type=int, default=1664)
    parser.add_argument("--predictor", default="auto", choices=["auto", "triton", "onnxruntime"])
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    storescp = shutil.which("storescp")
    if storescp is None:
        raise SystemExit("storescp not found: apt-get install dcmtk")
    total = args.latency_repeats + args.studies
    print(f"synthesising {total} 4-view studies of {args.rows} x {args.columns}...", flush=True)
    studies = [
        [image.to_bytes() for image in synth_study(5000 + n, images=4, rows=args.rows, columns=args.columns)]
        for n in range(total)
    ]
    with tempfile.TemporaryDirectory() as scratch:
        run = Path(scratch)
        dest_port, http, grpc, t_http, t_grpc, t_metrics, dimse, gateway_http = free_ports(8)
        received = run / "pacs"
        received.mkdir()
        pacs = subprocess.Popen(
            [storescp, "-aet", "PACS", "+xa", "+uf", "-od", str(received), str(dest_port)]
        )
        config = StackConfig(
            model_repository=Path(os.environ.get("DUET_MODEL_REPOSITORY", MODEL_REPOSITORY)),
            run_dir=run / "stack",
            http_port=http,
            grpc_port=grpc,
            triton=TritonPorts(t_http, t_grpc, t_metrics),
            predictor=args.predictor,
            models=("mammography",),
            gateway=LocalGatewayConfig(
                "DUET",
                dimse,
                gateway_http,
                {"DESTINATIONS": f"PACS@127.0.0.1:{dest_port}", "STABLE_SECONDS": "600"},
            ),
        )
        try:
            with LocalStack(config, say=print) as stack:
                url = stack.transformer_http
                print("warming up...", flush=True)
                direct_v2(url, studies[0])
                # 1. latency, one study at a time
                direct, direct_whole, through = [], [], []
                for n in range(args.latency_repeats):
                    study = studies[n]
                    direct.append(direct_v2(url, study))
                    direct_whole.append(direct_v2(url, study, whole_body=True))
                    before = sum(1 for _ in received.iterdir())
                    last_response = send_study(dimse, study)
                    through.append(wait_for_files(received, before + 1) - last_response)
                    print(
                        f"  study {n}: direct {direct[-1]:.2f}s (whole body {direct_whole[-1]:.2f}s), "
                        f"gateway {through[-1]:.2f}s",
                        flush=True,
                    )
                # 2. throughput, 4 at once; 3. the gateway's CPU and memory over that run
                batch = studies[args.latency_repeats :]
                bench_process = psutil.Process()
                client_cpu_before = sum(bench_process.cpu_times()[:2])
                started = time.monotonic()
                with ThreadPoolExecutor(4) as pool:
                    list(pool.map(lambda study: direct_v2(url, study), batch))
                direct_rate = len(batch) / (time.monotonic() - started) * 60
                client_cpu_direct = (sum(bench_process.cpu_times()[:2]) - client_cpu_before) / len(batch)
                gateway_process = psutil.Process(stack.processes["gateway"].pid)
                cpu_before = sum(gateway_process.cpu_times()[:2])
                client_cpu_before = sum(bench_process.cpu_times()[:2])
                before = sum(1 for _ in received.iterdir())
                started = time.monotonic()
                with Sampler(gateway_process) as memory, ThreadPoolExecutor(4) as pool:
                    list(pool.map(lambda study: send_study(dimse, study), batch))
                    wait_for_files(received, before + len(batch))
                gateway_rate = len(batch) / (time.monotonic() - started) * 60
                cpu_per_study = (sum(gateway_process.cpu_times()[:2]) - cpu_before) / len(batch)
                client_cpu_gateway = (sum(bench_process.cpu_times()[:2]) - client_cpu_before) / len(batch)
                predictor = stack.predictor_kind
                stages = stage_means(httpx.get(f"{stack.gateway_http}/metrics", timeout=10).text)
        finally:
            pacs.terminate()
            pacs.wait()
    direct_median, gateway_median = statistics.median(direct), statistics.median(through)
    overhead = (gateway_median - direct_median) / direct_median
    study_mb = statistics.mean(sum(map(len, study)) for study in studies) / 1e6
    lines = [
        "## DICOM gateway against direct v2",
        "",
        (
            f"{datetime.now(timezone.utc):%Y-%m-%d}, {platform.machine()} with {os.cpu_count()} cores "
            f"({platform.processor() or platform.platform()}), predictor {predictor}, "
            f"`python benchmarks/bench_gateway.py --studies {args.studies} --rows {args.rows} "
            f"--columns {args.columns}`: 4-view studies of {args.rows} x {args.columns} 12-bit Explicit VR "
            f"LE views "
            f"({study_mb:.0f} MB a study); the SR goes to dcmtk's storescp."
        ),
        "",
        "| measure | direct v2 | through the gateway | goal |",
        "|---|---|---|---|",
        (
            f"| last C-STORE response to SR at the destination, median of {args.latency_repeats} (quiet "
            f"period: none, "
            f"4 views) | {direct_median:.2f} s | {gateway_median:.2f} s ({overhead:+.0%}) | overhead <= 25%: "
            f"{'met' if overhead <= 0.25 else 'not met'} |"
        ),
        (
            f"| studies per minute, 4 concurrent clients / associations, {len(batch)} studies | "
            f"{direct_rate:.1f} | "
            f"{gateway_rate:.1f} ({gateway_rate / direct_rate:.0%}) | >= 90%: "
            f"{'met' if gateway_rate >= 0.9 * direct_rate else 'not met'} |"
        ),
        (
            f"| the same, direct v2 with the body handed to httpx whole (not in chunks) | "
            f"{statistics.median(direct_whole):.2f} s | | |"
        ),
        f"| gateway CPU per study | | {cpu_per_study:.2f} s | |",
        (
            f"| sender CPU per study on this machine (v2 client / C-STORE SCU, over the throughput run) | "
            f"{client_cpu_direct:.2f} s | {client_cpu_gateway:.2f} s | |"
        ),
        f"| gateway peak RSS over the throughput run | | {memory.peak / 2**20:.0f} MiB | |",
        "| gateway stages, mean over the run | | "
        + ", ".join(f"{stage} {seconds * 1000:.0f} ms" for stage, seconds in sorted(stages.items()))
        + " | |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with args.markdown.open("a") as handle:
            handle.write("\n" + text)


if __name__ == "__main__":
    main()
