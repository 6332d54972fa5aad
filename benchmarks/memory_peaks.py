"""Peak memory of the mammography transformer: per decoding path, and per 4-view study through a local stack.

    python -m benchmarks.memory_peaks [--no-stack]

Per path: one 4096 x 3328 12-bit view (the cached studies of `bench_study.py`) prepared by `study.prepare_pixels` in
a fresh process of its own, RSS sampled every 2 ms; the growth over the RSS after a small warm-up view is what
`transformers_pre/dicom/memory.py` rounds up into its estimates. Per study: a local stack (mammography only),
each study sent three times after one warm-up, the transformer's process group (server and decode workers)
sampled every 20 ms: REST with `tritonclient.http` binary tensors, and the uncompressed study once more over
gRPC with `tritonclient.grpc`. The figures in docs/reliability.md ("Memory, measured") come from here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from benchmarks.bench_study import COLUMNS, ROWS, send_study, study_blobs

CACHE = Path(tempfile.gettempdir()) / "duet-bench-mammography"
MIB = 1024 * 1024
PATHS = [("explicit", True), ("explicit", False), ("j2k", True), ("j2k", False), ("jpegls", True),
         ("jpeg", True), ("jpeg", False)]
console = Console()

# Runs in a fresh interpreter per path, so one path's allocations never shape the next one's.
ONE_VIEW = """
import os, sys, threading, time
from pathlib import Path
from duet.synthetic_dicom import synth_image
from transformers_pre.dicom.pixels import prepare_pixels
from transformers_pre.dicom.study import read_study
from transformers_pre.settings import DicomSettings

syntax, aware, path = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
def rss(): return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
small = synth_image(1, rows=256, columns=208, syntax=syntax, n_lesions=0, degraded=False).to_bytes()
warm = read_study([small], DicomSettings())[0]
prepare_pixels(small, warm.header, warm.laterality, (256, 208), aware)  # imports and codec set-up
blob = Path(path).read_bytes()
image = read_study([blob], DicomSettings())[0]
before, peak, done = rss(), [0], threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss()); time.sleep(0.002)
sampler = threading.Thread(target=sample); sampler.start()
prepare_pixels(blob, image.header, image.laterality, (256, 208), aware)
done.set(); sampler.join()
h = image.header
print((max(peak[0], rss()) - before), h.rows * h.columns * h.bits_allocated // 8, len(blob))
"""


def view_peaks() -> list[tuple[str, bool, float, float, float]]:
    """(syntax, resolution-aware, peak growth MiB, frame MiB, file MiB) per path."""
    rows = []
    for syntax, aware in PATHS:
        blobs = study_blobs(syntax, CACHE)
        if blobs is None:
            continue
        with tempfile.NamedTemporaryFile(suffix=".dcm") as view:
            view.write(blobs[0])
            view.flush()
            out = subprocess.run([sys.executable, "-c", ONE_VIEW, syntax, "1" if aware else "0", view.name],
                                 check=True, capture_output=True, text=True).stdout.split()
        growth, frame, size = (int(value) / MIB for value in out[-3:])
        rows.append((syntax, aware, growth, frame, size))
    return rows


def sampled_peak(pgid: int, action: Callable[[], None]) -> tuple[float, float]:
    """(group RSS before, peak during `action`) in MiB."""
    from duet.local.soak import group_rss_bytes

    before = group_rss_bytes(pgid)
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], group_rss_bytes(pgid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        action()
    finally:
        done.set()
        sampler.join()
    return before / MIB, peak[0] / MIB


def study_peaks() -> list[tuple[str, float, float, float]]:
    """(study and transport, MiB sent, group RSS before, peak) on a local mammography stack."""
    import tritonclient.grpc as grpc_client
    import tritonclient.http as http_client

    from duet.local.stack import LocalStack, StackConfig, free_ports
    from duet.local.triton import TritonPorts

    ports = free_ports(5)
    config = StackConfig(run_dir=Path(tempfile.mkdtemp(prefix="duet-memory-")), http_port=ports[0],
                         grpc_port=ports[1], triton=TritonPorts(http=ports[2], grpc=ports[3], metrics=ports[4]),
                         models=("mammography",))
    rows = []
    with LocalStack(config, say=console.print) as stack:
        pgid = stack.processes["transformer"].pid
        rest = http_client.InferenceServerClient(stack.transformer_http.removeprefix("http://"),
                                                 connection_timeout=300, network_timeout=300)
        for syntax, name in (("explicit", "uncompressed"), ("j2k", "JPEG 2000 Lossless")):
            blobs = study_blobs(syntax, CACHE)
            assert blobs is not None
            send_study(rest, blobs)

            def three_times(blobs: list[bytes] = blobs) -> None:
                for _ in range(3):
                    send_study(rest, blobs)

            rows.append((f"{name}, REST", sum(map(len, blobs)) / MIB, *sampled_peak(pgid, three_times)))
        blobs = study_blobs("explicit", CACHE)
        assert blobs is not None
        grpc = grpc_client.InferenceServerClient(stack.transformer_grpc)
        tensor = grpc_client.InferInput("dicom", [len(blobs)], "BYTES")
        tensor.set_data_from_numpy(np.array(blobs, dtype=object))
        rows.append(("uncompressed, gRPC", sum(map(len, blobs)) / MIB,
                     *sampled_peak(pgid, lambda: grpc.infer("mammography", [tensor], client_timeout=300))))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-stack", action="store_true", help="Per decoding path only.")
    args = parser.parse_args()
    table = Table("view", "path", "peak growth", "x frame", "file", title=f"one {ROWS} x {COLUMNS} view")
    for syntax, aware, growth, frame, size in view_peaks():
        table.add_row(syntax, "resolution-aware" if aware else "full resolution", f"{growth:.0f} MiB",
                      f"{growth / frame:.2f}", f"{size:.0f} MiB")
    console.print(table)
    if not args.no_stack:
        table = Table("4-view study", "MiB sent", "group RSS before", "peak", "growth",
                      title="transformer process group")
        for name, sent, before, peak in study_peaks():
            table.add_row(name, f"{sent:.0f}", f"{before:.0f} MiB", f"{peak:.0f} MiB", f"+{peak - before:.0f} MiB")
        console.print(table)
    console.print(json.dumps({"measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}))


if __name__ == "__main__":
    main()
