"""Mammography benchmark of the `mammography` transformer, in one run (`make bench`, `duet bench`, or directly).

    python -m benchmarks.bench_dicom [--repeats 7] [--url http://127.0.0.1:8080 | --no-stack] [--markdown PATH]

On synthetic 4096 x 3328 12-bit views (`duet.synthetic_dicom`, the same 4-view studies as `bench_study.py`):
1. the naive floor: one full-resolution OpenJPEG decode (pydicom + pylibjpeg-openjpeg) of one JPEG 2000 view;
2. per view, pinned to ONE core (OpenCV on one thread), for uncompressed, JPEG 2000 Lossless and JPEG-LS Lossless:
   the full-resolution decode alone, the transformer's preprocessing on its default resolution-aware path and on
   the full-resolution path (`DUET_DICOM_RESOLUTION_AWARE=false`), and, for reference, a naive pydicom path
   (pixel_array, apply_modality_lut + apply_voi_lut in float64, normalise, resize) for the uncompressed view;
3. end to end: 4-view studies sent with `tritonclient.http` binary tensors through a running stack (`--url`), or a
   local one started here on free ports (mammography only), as ratios to the floor (`bench_study.py`).
Prints tables; `--markdown PATH` rewrites the `## mammography preprocessing` section of PATH (created if needed).
Speed goals are checked here, never in tests.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np
from pydicom import dcmread
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut
from rich.console import Console
from rich.table import Table

from benchmarks.bench_study import (
    StudyRow,
    full_decode_ms,
    run_study_benchmark,
    study_blobs,
)
from benchmarks.bench_study import render_markdown as render_study_markdown
from transformers_pre.dicom.decode import decode_pixels
from transformers_pre.dicom.pixels import prepare_pixels
from transformers_pre.dicom.study import read_study
from transformers_pre.settings import DicomSettings

MODEL_HW = (256, 208)  # the shipped detector's input
SECTION = "## mammography preprocessing"
VIEW_SYNTAXES = {"uncompressed (Explicit VR LE)": "explicit", "JPEG 2000 Lossless": "j2k",
                 "JPEG-LS Lossless": "jpegls", "JPEG Baseline (8-bit, lossy)": "jpeg"}
CACHE = Path(tempfile.gettempdir()) / "duet-bench-mammography"
console = Console()


@dataclass(frozen=True)
class ViewResult:
    name: str
    size_mb: float
    decode_ms: float  # full-resolution decode alone (pydicom + the pinned plugin)
    reduced_ms: float  # preprocessing, resolution-aware (default)
    full_ms: float  # preprocessing, full resolution
    naive_ms: float | None


def median_ms(function: Callable[[], object], repeats: int) -> float:
    function()  # warm caches and lazy imports
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000.0


def naive(blob: bytes) -> np.ndarray:
    """The straightforward pydicom path: float64 LUTs over every pixel, then the same fit-inside resize."""
    ds = dcmread(BytesIO(blob))
    values = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds).astype(np.float64)
    values = (values - values.min()) / max(float(np.ptp(values)), 1e-9)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        values = 1.0 - values
    scale = min(MODEL_HW[1] / values.shape[1], MODEL_HW[0] / values.shape[0])
    size = (round(values.shape[1] * scale), round(values.shape[0] * scale))
    return cv2.resize(values.astype(np.float32), size, interpolation=cv2.INTER_AREA)


def measure_view(name: str, blob: bytes, repeats: int, with_naive: bool) -> ViewResult:
    (image,) = read_study([blob], DicomSettings())
    header = image.header
    decode_ms = median_ms(lambda: decode_pixels(blob, header.transfer_syntax, 0), repeats)
    reduced_ms = median_ms(lambda: prepare_pixels(blob, header, image.laterality, MODEL_HW, True), repeats)
    full_ms = median_ms(lambda: prepare_pixels(blob, header, image.laterality, MODEL_HW, False), repeats)
    naive_ms = median_ms(lambda: naive(blob), max(3, repeats // 3)) if with_naive else None
    return ViewResult(name, len(blob) / 1e6, decode_ms, reduced_ms, full_ms, naive_ms)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def render_markdown(floor_ms: float, views: list[ViewResult], studies: list[StudyRow], load: float) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        SECTION,
        "",
        (f"Measured {when} on {machine()} with `python -m benchmarks.bench_dicom` (medians; 1-minute load average "
         f"at the end {load:.1f}: the machine is shared). Synthetic 4096 x 3328 12-bit MONOCHROME2 views "
         f"(`duet dicom synth`), detector input {MODEL_HW[0]} x {MODEL_HW[1]}. The naive floor, one "
         f"full-resolution OpenJPEG decode of one JPEG 2000 view: **{floor_ms:.0f} ms**."),
        "",
        "Per view, one core (the process pinned to one CPU, OpenCV on one thread):",
        "",
        ("| view | file MB | full-resolution decode alone | preprocessing, resolution-aware (default) "
         "| preprocessing, full resolution | naive pydicom float64 path | default / floor |"),
        "|---|---|---|---|---|---|---|",
    ]
    for view in views:
        naive_cell = f"{view.naive_ms:.0f} ms" if view.naive_ms is not None else "-"
        lines.append(f"| {view.name} | {view.size_mb:.1f} | {view.decode_ms:.1f} ms | {view.reduced_ms:.1f} ms | "
                     f"{view.full_ms:.1f} ms | {naive_cell} | {view.reduced_ms / floor_ms:.3f} |")
    if studies:
        lines += ["", ("4-view studies end to end (`tritonclient.http` binary tensors, local stack, mammography "
                  "only; `bench_study.py`):"), ""]
        table = render_study_markdown(studies, machine=machine(), when=when).split("\n")
        lines += table[2:]  # the study table without its own measured-on line
    lines += [
        "",
        ("Goals (issue 10): JPEG 2000 Lossless and uncompressed 4-view studies end to end <= 0.15 x the floor. See "
         "'Mammography end to end' for the before/after comparison, the per-stage breakdown and fidelity."),
        "",
    ]
    return "\n".join(lines)


def write_section(path: Path, text: str) -> None:
    """Replace the `## mammography preprocessing` section of `path` (up to the next `## ` heading) or append it."""
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(current):
        updated = pattern.sub(lambda _: text + "\n", current, count=1)
    else:
        updated = current.rstrip("\n") + "\n\n" + text
    path.write_text(updated.rstrip("\n") + "\n")


def run_stack_studies(url: str | None, repeats: int, floor_ms: float) -> list[StudyRow]:
    """End-to-end study rows from the stack at `url`, or from a local mammography stack started here."""
    if url:
        return run_study_benchmark(url, repeats=repeats, cache=CACHE, floor_ms=floor_ms)
    from duet.local.stack import LocalStack, StackConfig, free_ports
    from duet.local.triton import TritonPorts

    ports = free_ports(5)
    config = StackConfig(run_dir=Path(tempfile.mkdtemp(prefix="duet-bench-dicom-")), http_port=ports[0],
                         grpc_port=ports[1], triton=TritonPorts(http=ports[2], grpc=ports[3], metrics=ports[4]),
                         models=("mammography",))
    with LocalStack(config, say=console.print) as stack:
        return run_study_benchmark(stack.transformer_http, repeats=repeats, cache=CACHE, floor_ms=floor_ms,
                                   transformer_pid=stack.processes["transformer"].pid)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="Timed runs per per-view measurement.")
    parser.add_argument("--study-repeats", type=int, default=5, help="Timed requests per end-to-end study.")
    parser.add_argument("--url", help="A running transformer's HTTP URL for the end-to-end studies.")
    parser.add_argument("--no-stack", action="store_true", help="Skip the end-to-end studies.")
    parser.add_argument("--markdown", type=Path, help="Rewrite this file's '## mammography preprocessing' section.")
    args = parser.parse_args(argv)

    cv2.setNumThreads(1)
    views = {name: (study_blobs(syntax, CACHE) or [b""])[0] for name, syntax in VIEW_SYNTAXES.items()}
    floor_ms = full_decode_ms(views["JPEG 2000 Lossless"], repeats=5)
    all_cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if all_cpus:
        os.sched_setaffinity(0, {min(all_cpus)})
    try:
        results = []
        for name, blob in views.items():
            compressed = "JPEG" in name
            repeats = max(3, args.repeats // 2) if compressed else args.repeats
            console.print(f"per view: {name}")
            results.append(measure_view(name, blob, repeats, with_naive=not compressed))
    finally:
        if all_cpus:
            os.sched_setaffinity(0, all_cpus)
    studies = [] if args.no_stack else run_stack_studies(args.url, args.study_repeats, floor_ms)
    load = os.getloadavg()[0]

    table = Table("view", "decode alone", "resolution-aware", "full resolution", "naive", "default / floor",
                  title=f"mammography per view, one core; floor {floor_ms:.0f} ms ({machine()})")
    for view in results:
        table.add_row(view.name, f"{view.decode_ms:.1f} ms", f"{view.reduced_ms:.1f} ms", f"{view.full_ms:.1f} ms",
                      f"{view.naive_ms:.0f} ms" if view.naive_ms else "-", f"{view.reduced_ms / floor_ms:.3f}")
    console.print(table)
    if studies:
        table = Table("4-view study", "MB", "end to end", "transformer CPU", "ratio to floor",
                      title="end to end, tritonclient.http binary tensors")
        for row in studies:
            table.add_row(row.name, f"{row.megabytes:.1f}", f"{row.wall_ms:.0f} ms",
                          f"{row.transformer_cpu_ms:.0f} ms" if row.transformer_cpu_ms is not None else "-",
                          f"{row.ratio:.3f}x")
        console.print(table)
    if args.markdown:
        write_section(args.markdown, render_markdown(floor_ms, results, studies, load))
        console.print(f"wrote the '{SECTION}' section of {args.markdown}")


if __name__ == "__main__":
    main()
