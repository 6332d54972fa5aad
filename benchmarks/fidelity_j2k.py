"""How much resolution-aware JPEG 2000 decoding changes what the detector sees and says (reduced vs full decode).

    python -m benchmarks.fidelity_j2k [--held-out 40] [--size 2048x1664] [--markdown docs/benchmarks.md]

Three measurements, each through the transformer's own code (`study.prepare_pixels` with
`resolution_aware=True` and `False`, `findings.collect_findings`) and the built detector run by ONNX Runtime:
1. full-size synthetic views (4096 x 3328, 12-bit, JPEG 2000 Lossless, the end-to-end benchmark's study): the
   model input's difference (max and 99th percentile, in 1/255 steps after the window) and the detector's outputs
   on both paths (box IoU of matched findings in stored pixels, score, quality and malignancy differences);
2. every JPEG 2000 file of pydicom's and pydicom-data's test data: the same input difference at the decode level
   (window from the file, or the min-max fallback; area resize of the whole frame to the model's fit), or why the
   service would refuse the file before decoding;
3. a held-out set of synthetic single-view studies (`duet.synthetic_dicom` in the `Namespace.HELD_OUT` seed space of
   `models.seed_spaces`, which by construction shares no random stream with the detector's training or build
   evaluation phantoms): mAP@0.5 and malignancy (risk) ROC AUC through each path.
Prints the tables; `--markdown PATH` writes them into PATH's "## Mammography end to end" section, under
"### Fidelity of resolution-aware decoding" (replaced on each run).
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from pydicom import dcmread
from rich.console import Console
from rich.progress import Progress
from sklearn.metrics import roc_auc_score

from duet.paths import MODEL_REPOSITORY
from duet.synthetic_dicom import synth_image
from models.detector.evaluate import average_precision
from models.detector.phantom import CLASS_NAMES
from models.seed_spaces import Namespace
from transformers_pre.dicom.decode import (
    JPEG2000_SYNTAXES,
    check_codestream,
    encapsulated_frame,
    locate_pixel_data,
)
from transformers_pre.dicom.findings import Thresholds, collect_findings, pairwise_iou
from transformers_pre.dicom.geometry import coarsest_reduction
from transformers_pre.dicom.jpeg2000 import decode_reduced
from transformers_pre.dicom.model import resolve_thresholds
from transformers_pre.dicom.pixels import prepare_pixels
from transformers_pre.dicom.preparation import PreparedImage
from transformers_pre.dicom.study import StudyImage, read_study
from transformers_pre.dicom.window import apply_table, build_table, stored_range
from transformers_pre.errors import DuetError
from transformers_pre.settings import DicomSettings, Settings

SUBSECTION = "### Fidelity of resolution-aware decoding"
HELD_OUT_SEED = 900_000
console = Console()


@dataclass
class Detector:
    session: ort.InferenceSession
    model_hw: tuple[int, int]
    labels: list[str]
    thresholds: Thresholds

    @classmethod
    def load(cls, repository: Path) -> Detector:
        folder = repository / "mammo_detector"
        session = ort.InferenceSession(str(folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
        height, width = session.get_inputs()[0].shape[2:]
        thresholds = resolve_thresholds(Settings(model_repository=repository), folder)
        return cls(session, (int(height), int(width)), (folder / "labels.txt").read_text().split(), thresholds)

    def run(self, pixels: list[np.ndarray]) -> dict[str, np.ndarray]:
        names = ["boxes", "scores", "classes", "malignancy", "quality"]
        return dict(zip(names, self.session.run(names, {"image": np.stack(pixels)[:, None]})))


def _prepare(blob: bytes, image: StudyImage, model_hw: tuple[int, int], reduced: bool) -> PreparedImage:
    view = prepare_pixels(blob, image.header, image.laterality, model_hw, resolution_aware=reduced)
    return PreparedImage(image=image, pixels=view.pixels, transform=view.transform, voi=view.voi)


def _steps(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    difference = np.abs(a.astype(np.float64) - b.astype(np.float64)) * 255.0
    return float(difference.max()), float(np.percentile(difference, 99))


def _findings(detector: Detector, outputs: dict[str, np.ndarray], prepared: list[PreparedImage]):
    try:
        return collect_findings(outputs, prepared, detector.labels, detector.thresholds)
    except DuetError:
        return None  # no diagnostic image


def synthetic_views(detector: Detector, blobs: list[bytes]) -> list[dict]:
    """Part 1: each full-size view on both paths."""
    images = read_study(blobs, DicomSettings())
    rows = []
    for blob, image in zip(blobs, images):
        started = time.perf_counter()
        reduced = _prepare(blob, image, detector.model_hw, True)
        reduced_s = time.perf_counter() - started
        started = time.perf_counter()
        full = _prepare(blob, image, detector.model_hw, False)
        full_s = time.perf_counter() - started
        steps_max, steps_p99 = _steps(reduced.pixels, full.pixels)
        outputs = [detector.run([item.pixels]) for item in (reduced, full)]
        findings = [_findings(detector, out, [item]) for out, item in zip(outputs, (reduced, full))]
        ious, score_diffs = [], []
        if findings[0] is not None and findings[1] is not None:
            for box, score, label in zip(findings[1].boxes, findings[1].scores, findings[1].labels):
                same = [i for i, other in enumerate(findings[0].labels) if other == label]
                if not same:
                    ious.append(0.0)
                    continue
                overlaps = pairwise_iou(box.astype(np.float64), findings[0].boxes[same].astype(np.float64))
                best = int(np.argmax(overlaps))
                ious.append(float(overlaps[best]))
                score_diffs.append(abs(float(score) - float(findings[0].scores[same][best])))
        rows.append({
            "view": f"{image.laterality} {image.view}", "reduction": int(np.log2(reduced.transform.grid_step)),
            "max": steps_max, "p99": steps_p99, "reduced_ms": reduced_s * 1000, "full_ms": full_s * 1000,
            "findings": (len(findings[0].scores) if findings[0] else 0, len(findings[1].scores) if findings[1] else 0),
            "min_iou": min(ious) if ious else float("nan"),
            "max_score_diff": max(score_diffs) if score_diffs else 0.0,
            "quality_diff": abs(float(outputs[0]["quality"][0, 0] - outputs[1]["quality"][0, 0])),
            "risk_diff": abs(float(outputs[0]["malignancy"][0, 0] - outputs[1]["malignancy"][0, 0])),
        })
    return rows


def _fit(rows: int, columns: int, model_hw: tuple[int, int]) -> tuple[int, int]:
    height, width = model_hw
    scale = min(width / columns, height / rows)
    return min(width, max(1, round(columns * scale))), min(height, max(1, round(rows * scale)))


def test_data_files(model_hw: tuple[int, int]) -> list[dict]:
    """Part 2: pydicom's and pydicom-data's JPEG 2000 files, at the decode level."""
    from pydicom.data import get_testdata_files

    rows = []
    for path in sorted(set(get_testdata_files("*")), key=lambda p: Path(p).name):
        try:
            ds = dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001, S112 - not every test file is readable DICOM; they are skipped
            continue
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if syntax not in JPEG2000_SYNTAXES:
            continue
        name = Path(path).name
        row: dict = {"file": name, "syntax": syntax.name, "size": f"{ds.get('Rows')} x {ds.get('Columns')}",
                     "bits": f"{ds.get('BitsStored')}{'s' if ds.get('PixelRepresentation') else 'u'}"}
        rows.append(row)
        if int(ds.get("SamplesPerPixel", 1)) != 1:
            row["outcome"] = "colour (the service takes MONOCHROME1/2 only)"
            continue
        if int(ds.get("NumberOfFrames", 1) or 1) != 1:
            row["outcome"] = "multi-frame (the intake's max_frames is 1)"
            continue
        blob = Path(path).read_bytes()
        try:
            frame = encapsulated_frame(blob, locate_pixel_data(blob, syntax, 0), 0)
            codestream = check_codestream(frame, int(ds.Rows), int(ds.Columns), int(ds.BitsAllocated),
                                          int(ds.BitsStored), int(ds.get("PixelRepresentation", 0)) == 1, 0)
        except DuetError as error:
            row["outcome"] = f"refused before decoding: {error.message.removeprefix('image 0: ')}"
            continue
        full_ds = dcmread(path)
        full_ds.pixel_array_options(decoding_plugin="pylibjpeg")
        full = full_ds.pixel_array
        reduction = min(codestream.levels, coarsest_reduction(int(ds.Columns), int(ds.Rows), model_hw))
        reduced = decode_reduced(frame, codestream, reduction, full.dtype, 0)
        try:
            window = build_table(full_ds, stored_range=stored_range(full))
        except DuetError:
            window = None
        if window is None:
            row["outcome"] = "its VOI cannot be applied"
            continue
        size = _fit(int(ds.Rows), int(ds.Columns), model_hw)
        model_full = cv2.resize(apply_table(full, window), size, interpolation=cv2.INTER_AREA) / 255.0
        model_reduced = cv2.resize(apply_table(reduced, window), size, interpolation=cv2.INTER_AREA) / 255.0
        steps_max, steps_p99 = _steps(model_reduced, model_full)
        row.update(outcome="compared", reduction=reduction, levels=codestream.levels, max=steps_max, p99=steps_p99)
    return rows


def held_out(detector: Detector, count: int, rows: int, columns: int, progress: Progress) -> dict:
    """Part 3: mAP@0.5 and malignancy AUC over `count` held-out single-view studies, on both paths."""
    task = progress.add_task(f"held-out {rows} x {columns} J2K views", total=count)
    truths: list[tuple[np.ndarray, list[str], bool, bool]] = []
    per_path: dict[bool, dict] = {True: {"dets": [], "risk": []}, False: {"dets": [], "risk": []}}
    for number in range(count):
        side = "LR"[number % 2]
        image = synth_image(HELD_OUT_SEED + number, laterality=side, view="CC", rows=rows, columns=columns,
                            syntax="j2k", namespace=Namespace.HELD_OUT)
        blob = image.to_bytes()
        study = read_study([blob], DicomSettings())[0]
        truths.append((image.boxes, image.labels, image.degraded, image.malignant))
        for reduced in (True, False):
            prepared = _prepare(blob, study, detector.model_hw, reduced)
            outputs = detector.run([prepared.pixels])
            findings = _findings(detector, outputs, [prepared])
            per_path[reduced]["dets"].append(findings)
            per_path[reduced]["risk"].append(float(outputs["malignancy"][0, 0]))
        progress.advance(task)
    keep = [i for i, truth in enumerate(truths) if not truth[2]]  # diagnostic by construction
    result = {"images": count, "diagnostic": len(keep)}
    for reduced in (True, False):
        aps = []
        for name in CLASS_NAMES:
            dets, gts = [], []
            for i in keep:
                findings = per_path[reduced]["dets"][i]
                labels = np.array(truths[i][1])
                gts.append(truths[i][0][labels == name] if len(labels) else np.zeros((0, 4)))
                if findings is None:
                    dets.append((np.zeros((0, 4)), np.zeros(0)))
                    continue
                pick = np.array([label == name for label in findings.labels], bool)
                dets.append((findings.boxes[pick].astype(np.float64), findings.scores[pick].astype(np.float64)))
            aps.append(average_precision(dets, gts))
        malignant = np.array([truths[i][3] for i in keep])
        risk = np.array([per_path[reduced]["risk"][i] for i in keep])
        key = "reduced" if reduced else "full"
        result[f"map50_{key}"] = float(np.nanmean(aps))
        result[f"auc_{key}"] = float(roc_auc_score(malignant, risk)) if len(set(malignant)) == 2 else float("nan")
    return result


def render_markdown(views: list[dict], files: list[dict], heldout: dict, when: str, machine: str,
                    size: tuple[int, int]) -> str:
    lines = [
        SUBSECTION,
        "",
        (f"Measured {when} on {machine} with `python -m benchmarks.fidelity_j2k` (ONNX Runtime, the built "
        "`mammo_detector`). Differences are in 1/255 steps of the windowed model input (reduced path minus full "
        "decode + area resize)."),
        "",
        ("Full-size synthetic views (4096 x 3328, 12-bit, JPEG 2000 Lossless), through `prepare_pixels` and "
        "`collect_findings`:"),
        "",
        ("| view | levels left out | input max | input p99 | findings reduced / full | worst matched box IoU "
        "| max score diff | quality diff | malignancy diff | reduced ms | full ms |"),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in views:
        lines.append(
            f"| {row['view']} | {row['reduction']} | {row['max']:.1f} | {row['p99']:.1f} | "
            f"{row['findings'][0]} / {row['findings'][1]} | {row['min_iou']:.3f} | {row['max_score_diff']:.3f} | "
            f"{row['quality_diff']:.4f} | {row['risk_diff']:.4f} | {row['reduced_ms']:.0f} | {row['full_ms']:.0f} |"
        )
    lines += [
        "",
        ("Every JPEG 2000 file in pydicom's and pydicom-data's test data (whole frame windowed and area-resized to "
        "the model's fit; the service would also crop the breast):"),
        "",
        "| file | syntax | rows x columns | bits | outcome | levels left out (of) | input max | input p99 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in files:
        if row.get("outcome") == "compared":
            lines.append(f"| {row['file']} | {row['syntax']} | {row['size']} | {row['bits']} | compared | "
                         f"{row['reduction']} ({row['levels']}) | {row['max']:.1f} | {row['p99']:.1f} |")
        else:
            lines.append(f"| {row['file']} | {row['syntax']} | {row['size']} | {row['bits']} | "
                         f"{row.get('outcome', '-')} | - | - | - |")
    lines += [
        "",
        (f"Held-out synthetic single-view studies ({heldout['images']} views of {size[0]} x {size[1]}, "
        f"{heldout['diagnostic']} diagnostic, JPEG 2000 Lossless, held-out seed space, sets {HELD_OUT_SEED}+):"),
        "",
        "| path | mAP@0.5 (diagnostic views) | malignancy ROC AUC |",
        "|---|---|---|",
        f"| reduced (default) | {heldout['map50_reduced']:.3f} | {heldout['auc_reduced']:.3f} |",
        (f"| full decode (`DUET_DICOM_RESOLUTION_AWARE=false`) | {heldout['map50_full']:.3f} | "
        f"{heldout['auc_full']:.3f} |"),
        (f"| difference | {heldout['map50_reduced'] - heldout['map50_full']:+.3f} | "
        f"{heldout['auc_reduced'] - heldout['auc_full']:+.3f} |"),
        "",
    ]
    return "\n".join(lines)


def write_subsection(path: Path, text: str) -> None:
    """Replace (or append) the fidelity subsection inside the '## Mammography end to end' section of `path`."""
    current = path.read_text()
    pattern = re.compile(rf"^{re.escape(SUBSECTION)}\n.*?(?=^## |^### |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(current):
        updated = pattern.sub(lambda _: text + "\n", current, count=1)
    else:
        section = re.compile(r"^## Mammography end to end\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
        match = section.search(current)
        if match is None:
            updated = current.rstrip("\n") + "\n\n## Mammography end to end\n\n" + text
        else:
            end = match.end()
            updated = current[:end].rstrip("\n") + "\n\n" + text + "\n" + current[end:]
    path.write_text(updated.rstrip("\n") + "\n")


def main() -> None:
    import os
    import platform
    from datetime import datetime, timezone

    from benchmarks.bench_study import study_blobs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held-out", type=int, default=40, help="Held-out single-view studies.")
    parser.add_argument("--size", default="2048x1664", help="Held-out view size, ROWSxCOLUMNS.")
    parser.add_argument("--repository", type=Path, default=MODEL_REPOSITORY)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    rows, columns = (int(v) for v in args.size.split("x"))
    detector = Detector.load(args.repository)
    with Progress(console=console) as progress:
        task = progress.add_task("full-size views and test files", total=2)
        blobs = study_blobs("j2k", Path(tempfile.gettempdir()) / "duet-bench-mammography")
        views = synthetic_views(detector, blobs or [])
        progress.advance(task)
        files = test_data_files(detector.model_hw)
        progress.advance(task)
        heldout = held_out(detector, args.held_out, rows, columns, progress)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"
    text = render_markdown(views, files, heldout, datetime.now(timezone.utc).strftime("%Y-%m-%d"), machine,
                           (rows, columns))
    console.print(text)
    if args.markdown:
        write_subsection(args.markdown, text)


if __name__ == "__main__":
    main()
