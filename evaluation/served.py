"""The detector's held-out evaluation through the served pipeline, and the fit of its study-risk calibration.

What is measured is what the `mammography` transformer answers: synthetic studies of 1-4 views are written as
DICOM files (`duet.synthetic_dicom`), read and validated (`study.read_study`), decoded, windowed, cropped and resized
(`study.prepare_pixels`, with resolution-aware decoding on: the served default, and off: the full decode), run by
ONNX Runtime on the built `1/model.onnx`, then post-processed by `findings.collect_findings`: quality gating, the
served score threshold, the one (class-agnostic) NMS, boxes mapped back to stored pixels, the study risk. A study
whose views are all judged non-diagnostic is answered 422 by the service: here it contributes no detections and
no risk (counted as `refused_studies`).

Seed spaces (`models.seed_spaces`): held-out studies in `Namespace.HELD_OUT`, calibration studies in
`Namespace.CALIBRATION`; neither shares a random stream with training phantoms or with each other. Study k of a
split has 1 + k % 4 views (L CC, R CC, L MLO, R MLO), so every study size is represented.

Metrics (keys of the card's `metrics`), all on the held-out split, resolution-aware decoding unless named:
- `ap50_<class>`, `map50`: AP@0.5 IoU in stored pixels over the truly diagnostic views (a lesion on a view the
  model wrongly judges non-diagnostic is a miss, as served);
- `malignancy_auc`: image-level ROC AUC of the malignancy output on truly diagnostic views;
- `quality_accuracy`, `quality_auc`: diagnostic (quality >= threshold) against the phantom's label, all views;
- `risk_auc`: study-level ROC AUC of the risk, truth = a malignant mass on a truly diagnostic view;
- `risk_ece` (calibrated, 10 equal-width bins), `risk_ece_uncalibrated`, `risk_reliability` (the bins);
- `map50_full_decode`, `risk_auc_full_decode` and the differences `*_reduced_minus_full` (issue 10: within 0.02).
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from rich.progress import Progress
from sklearn.metrics import roc_auc_score

from duet.synthetic_dicom import PHOTOMETRICS, VIEWS, synth_image
from models.cards import write_card
from models.detector.evaluate import average_precision
from models.detector.phantom import CLASS_NAMES
from models.seed_spaces import Namespace
from transformers_pre.dicom.findings import (
    CALIBRATION_FILE,
    RiskCalibration,
    Thresholds,
    collect_findings,
)
from transformers_pre.dicom.pixels import prepare_pixels
from transformers_pre.dicom.preparation import PreparedImage
from transformers_pre.dicom.study import read_study
from transformers_pre.errors import Unprocessable
from transformers_pre.settings import DicomSettings

from .calibration import ECE_BINS, expected_calibration_error, fit_platt, reliability_bins

EVALUATED_WITH = "served post-processing"
OUTPUT_NAMES = ("boxes", "scores", "classes", "malignancy", "quality")
# Resolution-aware decoding on (the served default) and off (`DUET_DICOM_RESOLUTION_AWARE=false`).
PATHS = {"reduced": True, "full": False}


@dataclass(frozen=True)
class SplitConfig:
    """One split of synthetic studies: `studies` studies from `seed` in `namespace`, views of rows x columns
    stored pixels, 12-bit, in transfer syntax `syntax` (duet.synthetic_dicom's names); photometric interpretation
    alternates between studies."""

    namespace: Namespace
    seed: int
    studies: int
    rows: int
    columns: int
    syntax: str

    def study_seeds(self) -> range:
        return range(self.seed, self.seed + self.studies)


@dataclass(frozen=True)
class ViewTruth:
    boxes: np.ndarray  # float32 [n, 4] stored pixels
    labels: list[str]
    degraded: bool
    malignant: bool


@dataclass(frozen=True)
class PathResult:
    """What the service answers for one study on one decoding path (findings None: refused, 422)."""

    quality: np.ndarray  # float32 [views]
    malignancy: np.ndarray  # float32 [views]
    boxes: np.ndarray  # float32 [m, 4] stored pixels
    scores: np.ndarray  # float32 [m]
    labels: list[str]
    image_index: np.ndarray  # int32 [m]
    raw_risk: float | None  # None when refused


@dataclass(frozen=True)
class StudyResult:
    seed: int
    truths: list[ViewTruth]
    paths: dict[str, PathResult]

    @property
    def malignant(self) -> bool:
        """The study's truth: a malignant mass on a view that is diagnostic by construction."""
        return any(truth.malignant for truth in self.truths if not truth.degraded)


def read_thresholds(model_dir: Path) -> Thresholds:
    """The served thresholds the build suggests (`thresholds.json`: score, quality, nms_iou)."""
    raw = json.loads((model_dir / "thresholds.json").read_text())
    return Thresholds(score=float(raw["score"]), nms_iou=float(raw["nms_iou"]), quality=float(raw["quality"]))


_SESSION: dict[str, ort.InferenceSession] = {}


def _session(model_path: str) -> ort.InferenceSession:
    if model_path not in _SESSION:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        _SESSION[model_path] = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    return _SESSION[model_path]


def run_study(
    split: SplitConfig, seed: int, model_path: str, class_names: list[str], thresholds: Thresholds,
    paths: tuple[str, ...],
) -> StudyResult:
    """Synthesise study `seed` of `split` as DICOM and run it through the served pipeline on each decoding path."""
    views = 1 + (seed - split.seed) % len(VIEWS)
    photometric = PHOTOMETRICS[seed % len(PHOTOMETRICS)]
    images = [
        synth_image(seed, index=index, laterality=side, view=view, rows=split.rows, columns=split.columns,
                    photometric=photometric, syntax=split.syntax, study_seed=seed, namespace=split.namespace)
        for index, (side, view) in enumerate(VIEWS[:views])
    ]
    blobs = [image.to_bytes() for image in images]
    study = read_study(blobs, DicomSettings())
    session = _session(model_path)
    height, width = (int(v) for v in session.get_inputs()[0].shape[2:])
    results: dict[str, PathResult] = {}
    for name in paths:
        prepared = []
        for blob, image in zip(blobs, study):
            view = prepare_pixels(blob, image.header, image.laterality, (height, width), PATHS[name])
            prepared.append(PreparedImage(image=image, pixels=view.pixels, transform=view.transform, voi=view.voi))
        batch = np.stack([item.pixels for item in prepared])[:, None].astype(np.float32)
        outputs = dict(zip(OUTPUT_NAMES, session.run(list(OUTPUT_NAMES), {"image": batch})))
        quality = outputs["quality"][:, 0].astype(np.float32)
        malignancy = outputs["malignancy"][:, 0].astype(np.float32)
        try:
            found = collect_findings(outputs, prepared, class_names, thresholds)
        except Unprocessable:  # every view judged non-diagnostic: the service answers 422
            results[name] = PathResult(quality, malignancy, np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                                       [], np.zeros(0, np.int32), None)
            continue
        results[name] = PathResult(quality, malignancy, found.boxes, found.scores, list(found.labels),
                                   found.image_index, found.raw_risk)
    truths = [ViewTruth(image.boxes, image.labels, image.degraded, image.malignant) for image in images]
    return StudyResult(seed, truths, results)


def _run_one(arguments: tuple) -> StudyResult:
    return run_study(*arguments)


def run_split(
    split: SplitConfig, model_dir: Path, paths: tuple[str, ...], progress: Progress | None = None,
    workers: int = 1, description: str = "served evaluation",
) -> list[StudyResult]:
    """Every study of `split` through the served pipeline, in seed order (`workers` forked processes)."""
    model_path = str(model_dir / "1" / "model.onnx")
    class_names = (model_dir / "labels.txt").read_text().split()
    thresholds = read_thresholds(model_dir)
    jobs = [(split, seed, model_path, class_names, thresholds, paths) for seed in split.study_seeds()]
    task = progress.add_task(description, total=len(jobs)) if progress is not None else None
    results: list[StudyResult] = []

    def collect(mapped: Iterable[StudyResult]) -> None:
        for result in mapped:
            results.append(result)
            if progress is not None and task is not None:
                progress.update(task, advance=1)

    if workers > 1:
        # Forked workers, each with its own single-threaded ONNX Runtime session (created after the fork).
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            collect(pool.map(_run_one, jobs, chunksize=4))
    else:
        collect(map(_run_one, jobs))
    return results


def _auc(truth: list[bool] | np.ndarray, score: list[float] | np.ndarray) -> float | None:
    truth = np.asarray(truth, dtype=bool)
    if len(np.unique(truth)) < 2:
        return None
    return float(roc_auc_score(truth, np.asarray(score, dtype=np.float64)))


def detection_metrics(results: list[StudyResult], path: str) -> dict[str, float | None]:
    """AP@0.5 per class (stored pixels, truly diagnostic views) and their mean, for one decoding path."""
    metrics: dict[str, float | None] = {}
    for name in CLASS_NAMES:
        detections, truths = [], []
        for study in results:
            answer = study.paths[path]
            for index, truth in enumerate(study.truths):
                if truth.degraded:
                    continue
                labels = np.array(truth.labels)
                truths.append(truth.boxes[labels == name] if len(labels) else np.zeros((0, 4), np.float32))
                pick = (answer.image_index == index) & np.array([label == name for label in answer.labels], bool)
                detections.append((answer.boxes[pick].astype(np.float64), answer.scores[pick].astype(np.float64)))
        ap = average_precision(detections, truths)
        metrics[f"ap50_{name}"] = None if np.isnan(ap) else ap
    values = [v for key, v in metrics.items() if v is not None]
    metrics["map50"] = float(np.mean(values)) if values else None
    return metrics


def risk_inputs(results: list[StudyResult], path: str) -> tuple[np.ndarray, np.ndarray]:
    """(raw risk, truth) of the studies the service answers on `path` (refused studies left out)."""
    answered = [study for study in results if study.paths[path].raw_risk is not None]
    return (np.array([study.paths[path].raw_risk for study in answered], np.float64),
            np.array([study.malignant for study in answered], bool))


def held_out_metrics(results: list[StudyResult], calibration: RiskCalibration, threshold: float) -> dict[str, Any]:
    """Every metric of the module docstring for held-out `results` run on both decoding paths."""
    metrics: dict[str, Any] = {"evaluated_with": EVALUATED_WITH}
    reduced = "reduced"
    metrics.update(detection_metrics(results, reduced))
    views = [(truth, study.paths[reduced].quality[i], study.paths[reduced].malignancy[i])
             for study in results for i, truth in enumerate(study.truths)]
    diagnostic_views = [(truth, malignancy) for truth, _, malignancy in views if not truth.degraded]
    metrics["malignancy_auc"] = _auc([t.malignant for t, _ in diagnostic_views], [m for _, m in diagnostic_views])
    truly_diagnostic = np.array([not truth.degraded for truth, _, _ in views])
    quality = np.array([q for _, q, _ in views], np.float64)
    metrics["quality_accuracy"] = float(np.mean((quality >= threshold) == truly_diagnostic))
    metrics["quality_auc"] = _auc(truly_diagnostic, quality)
    raw, truth = risk_inputs(results, reduced)
    calibrated = np.asarray(calibration.apply(raw), np.float64).reshape(-1)
    metrics["risk_auc"] = _auc(truth, raw)
    metrics["risk_ece"] = expected_calibration_error(calibrated, truth) if len(raw) else None
    metrics["risk_ece_uncalibrated"] = expected_calibration_error(raw, truth) if len(raw) else None
    metrics["risk_reliability"] = {"calibrated": reliability_bins(calibrated, truth),
                                   "uncalibrated": reliability_bins(raw, truth)}
    metrics["risk_prevalence"] = float(truth.mean()) if len(truth) else None
    if "full" in results[0].paths:
        full = detection_metrics(results, "full")
        metrics["map50_full_decode"] = full["map50"]
        metrics["risk_auc_full_decode"] = _auc(*reversed(risk_inputs(results, "full")))
        for key, full_key in (("map50", "map50_full_decode"), ("risk_auc", "risk_auc_full_decode")):
            if metrics[key] is not None and metrics[full_key] is not None:
                metrics[f"{key}_reduced_minus_full"] = metrics[key] - metrics[full_key]
    metrics.update(
        images=len(views),
        diagnostic_images=int(truly_diagnostic.sum()),
        studies=len(results),
        refused_studies=sum(study.paths[reduced].raw_risk is None for study in results),
    )
    return metrics


def splits(recipe: dict[str, Any]) -> tuple[SplitConfig, SplitConfig]:
    """(calibration, held-out) splits of a detector recipe's `served_evaluation`."""
    config = recipe["served_evaluation"]
    size = {"rows": int(config["rows"]), "columns": int(config["columns"])}
    calibration = SplitConfig(Namespace.CALIBRATION, int(config["calibration_seed"]),
                              int(config["calibration_studies"]), syntax=config["calibration_syntax"], **size)
    held_out = SplitConfig(Namespace.HELD_OUT, int(config["held_out_seed"]), int(config["held_out_studies"]),
                           syntax=config["held_out_syntax"], **size)
    return calibration, held_out


def metrics_markdown(metrics: dict[str, Any], recipe: dict[str, Any]) -> str:
    """The card README's metrics section."""
    def fmt(value: Any) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    calibration, held_out = splits(recipe)
    rows = "\n".join(f"| AP@0.5 {name} | {fmt(metrics[f'ap50_{name}'])} |" for name in CLASS_NAMES)
    return f"""## Metrics (held out, through the served pipeline)

{metrics["studies"]} synthetic studies ({metrics["images"]} views of {held_out.rows} x {held_out.columns}, \
{metrics["diagnostic_images"]} diagnostic; {held_out.syntax}; seed space HELD_OUT) written as DICOM, decoded by
the transformer's code (resolution-aware), run by ONNX Runtime and post-processed as served (quality gating, score
threshold, one class-agnostic NMS, boxes in stored pixels). {metrics["refused_studies"]} studies had no view judged
diagnostic (422 when served).

| metric | value |
|---|---|
{rows}
| mAP@0.5 | {fmt(metrics["map50"])} |
| malignancy ROC AUC (image, diagnostic views) | {fmt(metrics["malignancy_auc"])} |
| study risk ROC AUC | {fmt(metrics["risk_auc"])} |
| study risk ECE (10 bins), calibrated / uncalibrated | {fmt(metrics["risk_ece"])} / \
{fmt(metrics["risk_ece_uncalibrated"])} |
| quality accuracy / ROC AUC | {fmt(metrics["quality_accuracy"])} / {fmt(metrics["quality_auc"])} |
| mAP@0.5 / risk AUC with full decode | {fmt(metrics.get("map50_full_decode"))} / \
{fmt(metrics.get("risk_auc_full_decode"))} |

Risk calibration (`{CALIBRATION_FILE}`): Platt scaling fitted on {calibration.studies} studies of seed space
CALIBRATION ({calibration.syntax}).
"""


def evaluate_detector(model_dir: Path, recipe: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Fit the risk calibration, evaluate the held-out split, and rewrite the built model's card.

    Writes `calibration.json` beside the model, puts the metrics (with `evaluated_with`) on `card.json` and a
    metrics section in `README.md`. Returns the metrics.
    """
    model_dir = Path(model_dir)
    workers = int(recipe["served_evaluation"].get("workers", 1))
    calibration_split, held_out_split = splits(recipe)
    calibration_results = run_split(calibration_split, model_dir, ("reduced",), progress, workers,
                                    "detector: calibration studies")
    raw, truth = risk_inputs(calibration_results, "reduced")
    calibration = fit_platt(raw, truth)
    (model_dir / CALIBRATION_FILE).write_text(json.dumps(calibration.to_json(
        fitted_on={"namespace": calibration_split.namespace.name, "seed": calibration_split.seed,
                   "studies": calibration_split.studies, "answered_studies": len(raw),
                   "malignant_studies": int(truth.sum())},
        meaning="calibrated probability that the study shows a malignant mass on a diagnostic view "
                "(synthetic phantoms; no clinical meaning)",
    ), indent=2) + "\n")
    held_out_results = run_split(held_out_split, model_dir, tuple(PATHS), progress, workers,
                                 "detector: held-out studies (both decoding paths)")
    metrics = held_out_metrics(held_out_results, calibration, read_thresholds(model_dir).quality)
    metrics["calibration"] = {"slope": calibration.slope, "intercept": calibration.intercept,
                              "studies": len(raw), "bins": ECE_BINS}
    card = json.loads((model_dir / "card.json").read_text())
    card.pop("artifacts", None)
    card["metrics"] = {**card.get("metrics", {}), **metrics}
    card.setdefault("data", {})["served_evaluation"] = recipe["served_evaluation"]
    readme = (model_dir / "README.md").read_text().split("\n## Artifacts\n", 1)[0]
    readme = readme.split("\n## Metrics", 1)[0].rstrip() + "\n\n" + metrics_markdown(metrics, recipe)
    write_card(model_dir, card, readme)
    return metrics
