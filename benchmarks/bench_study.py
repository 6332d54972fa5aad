"""End-to-end 4-view mammography studies through a running stack, as ratios to one full-resolution decode.

    python -m benchmarks.bench_study [--url http://127.0.0.1:8080] [--repeats 5] [--markdown docs/benchmarks.md]

Without `--url` a local stack (`duet.local.stack.LocalStack`, mammography only, free ports) is started and
stopped. Each study is four synthetic 4096 x 3328 12-bit views (`duet.synthetic_dicom`), sent as one request with
`tritonclient.http` binary tensors, as a hospital client would. The floor ("naive decode") is one full-resolution
OpenJPEG decode (pydicom + pylibjpeg-openjpeg) of the first view of the JPEG 2000 study, measured in the same run.
The transformer's CPU seconds per study are read from /proc when the stack is local (its process and children).

`run_study_benchmark(url, ...)` is the entry point `duet bench` calls; it returns `StudyRow`s and a markdown
section (`render_markdown`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from pydicom import dcmread
from rich.console import Console
from rich.progress import Progress

from duet.synthetic_dicom import synth_study

ROWS, COLUMNS, BITS = 4096, 3328, 12
SEED = 7
# Study name -> duet.synthetic_dicom syntax.
STUDY_SYNTAXES = {
    "JPEG 2000 Lossless": "j2k",
    "HTJ2K Lossless": "htj2k",
    "JPEG-LS Lossless": "jpegls",
    "JPEG Baseline (8-bit, lossy)": "jpeg",
    "uncompressed (Explicit VR LE)": "explicit",
}
SECTION = "## Mammography end to end"
console = Console()


@dataclass(frozen=True)
class StudyRow:
    """One study syntax: request size, median wall time end to end, transformer CPU per study, ratio to floor."""

    name: str
    megabytes: float
    wall_ms: float
    wall_min_ms: float
    transformer_cpu_ms: float | None
    floor_ms: float
    client_encode_ms: float | None = None  # tritonclient building the request body, part of the end-to-end time

    @property
    def ratio(self) -> float:
        return self.wall_ms / self.floor_ms


def study_blobs(syntax: str, cache: Path) -> list[bytes] | None:
    """The four files of the benchmark study in `syntax` (cached on disk: encoding takes seconds per view).

    None when this environment cannot encode the syntax (HTJ2K needs an encoder duet does not depend on).
    """
    folder = cache / f"{ROWS}x{COLUMNS}-{BITS}-{SEED}-{syntax}"
    files = sorted(folder.glob("*.dcm"))
    if len(files) != 4:
        try:
            if syntax == "htj2k":
                blobs = _htj2k_study()
            else:
                bits = 8 if syntax == "jpeg" else BITS  # JPEG Baseline is 8-bit only
                blobs = [image.to_bytes() for image in synth_study(
                    SEED, images=4, rows=ROWS, columns=COLUMNS, bits=bits, syntax=syntax, n_lesions=2,
                    degraded=False)]
        except (ValueError, RuntimeError, ImportError) as error:
            console.print(f"[yellow]{syntax}: cannot synthesise ({error}); skipped[/]")
            return None
        folder.mkdir(parents=True, exist_ok=True)
        for index, blob in enumerate(blobs):
            (folder / f"{index}.dcm").write_bytes(blob)
        files = sorted(folder.glob("*.dcm"))
    return [path.read_bytes() for path in files]


def _htj2k_study() -> list[bytes]:
    """The benchmark study re-encoded as HTJ2K Lossless, with imagecodecs' OpenJPH encoder when it can be imported.

    duet does not depend on imagecodecs (it requires numpy >= 2; duet pins numpy < 2) and no encoder duet installs
    writes HTJ2K; put a copy on PYTHONPATH to get this row. OpenJPH writes 16-bit samples for uint16 input, so
    BitsStored becomes 16 (the values, window and picture are those of the 12-bit study).
    """
    import imagecodecs
    from pydicom.encaps import encapsulate
    from pydicom.uid import HTJ2KLossless

    blobs = []
    for image in synth_study(SEED, images=4, rows=ROWS, columns=COLUMNS, bits=BITS, syntax="explicit", n_lesions=2,
                             degraded=False):
        ds = image.dataset
        codestream = imagecodecs.htj2k_encode(np.ascontiguousarray(ds.pixel_array), reversible=True)
        ds.PixelData = encapsulate([codestream])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = HTJ2KLossless
        ds.BitsStored, ds.HighBit = 16, 15
        buffer = BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        blobs.append(buffer.getvalue())
    return blobs


def full_decode_ms(blob: bytes, repeats: int = 3) -> float:
    """The naive floor: one full-resolution decode of one view with pydicom + pylibjpeg-openjpeg (median ms)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        ds = dcmread(BytesIO(blob))
        ds.pixel_array_options(decoding_plugin="pylibjpeg")
        ds.pixel_array  # noqa: B018 - the decode is the measurement
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000.0


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its reaped children, plus its live children (/proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for candidate in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{candidate}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime are fields 14-17 (1-based); after the ")" split they start at index 11.
        total += sum(int(value) for value in fields[11:15]) / ticks
    return total


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found + [grandchild for child in found for grandchild in _children(child)]


def _study_tensors(blobs: list[bytes]) -> tuple[list, list]:
    import tritonclient.http as triton_http

    tensor = triton_http.InferInput("dicom", [len(blobs)], "BYTES")
    tensor.set_data_from_numpy(np.array(blobs, dtype=object), binary_data=True)
    outputs = [triton_http.InferRequestedOutput(name, binary_data=True)
               for name in ("boxes", "scores", "labels", "image_index", "quality", "risk")]
    return [tensor], outputs


def send_study(client, blobs: list[bytes]) -> None:
    inputs, outputs = _study_tensors(blobs)
    client.infer("mammography", inputs, outputs=outputs)


def client_encode_ms(blobs: list[bytes], repeats: int = 3) -> float:
    """Median ms tritonclient spends turning the study into a request body (its BYTES serialisation and the
    body join `infer` does too; the send's own concatenation is not in it): the client's share of end to end."""
    import tritonclient.http as triton_http

    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        inputs, outputs = _study_tensors(blobs)
        triton_http.InferenceServerClient.generate_request_body(inputs, outputs=outputs)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000.0


def run_study_benchmark(
    url: str,
    *,
    repeats: int = 5,
    cache: Path | None = None,
    transformer_pid: int | None = None,
    syntaxes: dict[str, str] | None = None,
    floor_ms: float | None = None,
) -> list[StudyRow]:
    """Send each 4-view study `repeats` times (after one warm-up) to the stack at `url` (transformer HTTP,
    e.g. "http://127.0.0.1:8080"); rows carry the median wall time and its ratio to the naive floor.

    transformer_pid: when given (a local stack), the transformer's CPU seconds per study are measured too.
    floor_ms: the naive floor measured by the caller in the same run (else measured here, before the studies).
    """
    import tritonclient.http as triton_http

    cache = cache or Path(tempfile.gettempdir()) / "duet-bench-mammography"
    syntaxes = syntaxes or STUDY_SYNTAXES
    client = triton_http.InferenceServerClient(url.removeprefix("http://"), connection_timeout=300,
                                               network_timeout=300)
    rows: list[StudyRow] = []
    with Progress(console=console) as progress:
        task = progress.add_task("4-view 4096 x 3328 studies", total=len(syntaxes) + 1)
        j2k = study_blobs("j2k", cache)
        assert j2k is not None
        floor_ms = floor_ms or full_decode_ms(j2k[0])
        progress.advance(task)
        for name, syntax in syntaxes.items():
            blobs = j2k if syntax == "j2k" else study_blobs(syntax, cache)
            if blobs is None:
                progress.advance(task)
                continue
            send_study(client, blobs)  # warm-up: connections, worker processes, predictor metadata
            times, cpu = [], []
            for _ in range(repeats):
                cpu_before = process_cpu_seconds(transformer_pid) if transformer_pid else 0.0
                started = time.perf_counter()
                send_study(client, blobs)
                times.append(time.perf_counter() - started)
                if transformer_pid:
                    cpu.append(process_cpu_seconds(transformer_pid) - cpu_before)
            rows.append(StudyRow(
                name=name,
                megabytes=sum(len(blob) for blob in blobs) / 1e6,
                wall_ms=statistics.median(times) * 1000.0,
                wall_min_ms=min(times) * 1000.0,
                transformer_cpu_ms=statistics.median(cpu) * 1000.0 if cpu else None,
                floor_ms=floor_ms,
                client_encode_ms=client_encode_ms(blobs),
            ))
            progress.advance(task)
    client.close()
    return rows


def render_markdown(rows: list[StudyRow], *, machine: str, when: str, note: str = "") -> str:
    """The markdown table of `rows` (no section heading)."""
    floor = rows[0].floor_ms if rows else float("nan")
    lines = [
        (f"Measured {when} on {machine} with `python -m benchmarks.bench_study` (medians of the timed requests). "
        f"Naive floor, one full-resolution OpenJPEG decode of one {ROWS} x {COLUMNS} {BITS}-bit J2K view in the "
        f"same run: **{floor:.0f} ms**."),
        "",
        ("| 4-view study | request MB | end to end (median) | fastest | transformer CPU per study | of which the "
         "client encoding the request (tritonclient) | ratio to the floor |"),
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cpu = f"{row.transformer_cpu_ms:.0f} ms" if row.transformer_cpu_ms is not None else "-"
        encode = f"{row.client_encode_ms:.0f} ms" if row.client_encode_ms is not None else "-"
        lines.append(f"| {row.name} | {row.megabytes:.1f} | {row.wall_ms:.0f} ms | {row.wall_min_ms:.0f} ms | "
                     f"{cpu} | {encode} | **{row.ratio:.3f}x** |")
    if note:
        lines += ["", note]
    return "\n".join(lines)


def main() -> None:
    import platform
    from datetime import datetime, timezone

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="A running transformer's HTTP URL; default: start a local stack.")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", help="Comma-separated synthetic_dicom syntaxes (j2k,htj2k,jpegls,explicit).")
    args = parser.parse_args()
    syntaxes = STUDY_SYNTAXES
    if args.only:
        wanted = set(args.only.split(","))
        syntaxes = {name: syntax for name, syntax in STUDY_SYNTAXES.items() if syntax in wanted}
    if args.url:
        rows = run_study_benchmark(args.url, repeats=args.repeats, syntaxes=syntaxes)
    else:
        from duet.local.stack import LocalStack, StackConfig, free_ports
        from duet.local.triton import TritonPorts

        ports = free_ports(5)
        run_dir = Path(tempfile.mkdtemp(prefix="duet-bench-study-"))
        config = StackConfig(run_dir=run_dir, http_port=ports[0], grpc_port=ports[1],
                             triton=TritonPorts(http=ports[2], grpc=ports[3], metrics=ports[4]),
                             models=("mammography",))
        with LocalStack(config, say=console.print) as stack:
            rows = run_study_benchmark(stack.transformer_http, repeats=args.repeats, syntaxes=syntaxes,
                                       transformer_pid=stack.processes["transformer"].pid)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"
    console.print(render_markdown(rows, machine=machine,
                                  when=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")))


if __name__ == "__main__":
    main()
