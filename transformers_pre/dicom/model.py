"""The `mammography` transformer: a kserve.Model in front of the Triton `mammo_detector` model.

Request: input `dicom` BYTES [n] (1-4 DICOM Part 10 files of one study), optional parameter `report: "sr"`.
Response: `boxes` FP32 [m, 4] (stored pixels of the image named by `image_index`), `scores` FP32 [m], `labels`
BYTES [m], `image_index` INT32 [m], `quality` FP32 [n], `risk` FP32 [1], and `report` BYTES [1] (a DICOM SR) when
asked. Response parameter `images`: a JSON array, one object per image in request order, with `index`,
`sop_instance_uid`, `laterality`, `view`, `diagnostic` and `voi` (never patient data); `risk_calibrated`: whether
the model's `calibration.json` calibrated `risk` (findings module docstring); `cleared_for_clinical_use`: whether
the model card clears the model (transformers_pre/clinical_use.py) and, when it does not, `clinical_use_notice`:
the "NOT FOR CLINICAL USE: ..." label, which the SR carries too.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pydicom.config
from kserve import InferRequest, InferResponse

from ..base import DuetModel
from ..clinical_use import UNKNOWN_MODEL, read_clinical_use
from ..codecs import bytes_tensor, decode_blobs, request_parameters
from ..contract import ModelContract, TensorSpec
from ..errors import BadRequest, PredictorError
from ..metrics import PAYLOAD_BYTES, stage
from ..predictor_client import PredictorClient
from ..settings import Settings
from .findings import (
    CALIBRATION_FILE,
    RiskCalibration,
    StudyFindings,
    Thresholds,
    collect_findings,
    load_calibration,
)
from .memory import MemoryBudget, study_preparation_bytes
from .pools import DecodePools
from .preparation import PreparedImage, prepare_study
from .report import Device, SeriesLabel, build_report
from .study import StudyImage, read_study

PUBLIC_NAME = "mammography"
PREDICTOR_MODEL = "mammo_detector"
INPUT_NAME = "image"
OUTPUT_NAMES = ("boxes", "scores", "classes", "malignancy", "quality")
REPORT_FORMATS = ("sr",)
# thresholds.json keys (as the detector build writes them) -> DicomSettings fields.
THRESHOLD_KEYS = {"score": "score_threshold", "quality": "quality_threshold", "nms_iou": "nms_iou"}

logger = logging.getLogger("duet.mammography")


@dataclass(frozen=True)
class PreparedStudy:
    """A validated, decoded study ready for one batched predictor call."""

    request: InferRequest
    images: list[StudyImage]
    prepared: list[PreparedImage]
    report: bool


def resolve_thresholds(settings: Settings, folder: Path) -> Thresholds:
    """Thresholds: a DicomSettings field set explicitly (environment) wins, then the model's `thresholds.json`
    (suggested by the build), then the DicomSettings default."""
    dicom = settings.dicom
    suggested: dict[str, Any] = {}
    path = folder / "thresholds.json"
    if path.exists():
        raw = json.loads(path.read_text())
        for key, field in THRESHOLD_KEYS.items():
            value = raw.get(key, raw.get(field))
            if isinstance(value, (int, float)):
                suggested[field] = float(value)
    values = {
        field: getattr(dicom, field) if field in dicom.model_fields_set or field not in suggested
        else suggested[field]
        for field in THRESHOLD_KEYS.values()
    }
    return Thresholds(score=values["score_threshold"], nms_iou=values["nms_iou"],
                      quality=values["quality_threshold"])


class MammographyModel(DuetModel):
    """DICOM study -> lesion boxes in stored pixels, per-image quality, study risk, optional DICOM SR."""

    contract = ModelContract(
        inputs=(TensorSpec("dicom", "BYTES", (-1,), "1 to 4 DICOM Part 10 files of one study"),),
        outputs=(
            TensorSpec("boxes", "FP32", (-1, 4),
                       "x_min, y_min, x_max, y_max in the stored pixels of the image image_index names"),
            TensorSpec("scores", "FP32", (-1,), "each finding's probability"),
            TensorSpec("labels", "BYTES", (-1,), "each finding's label"),
            TensorSpec("image_index", "INT32", (-1,), "the request image each finding is on"),
            TensorSpec("quality", "FP32", (-1,), "each image's probability of being diagnostic"),
            TensorSpec("risk", "FP32", (1,), "the study's risk"),
        ),
        optional_outputs=(TensorSpec("report", "BYTES", (1,), "a DICOM SR, when the request's parameter "
                                                              "'report' is 'sr'"),),
    )

    def __init__(self, settings: Settings, predictor: PredictorClient) -> None:
        super().__init__(PUBLIC_NAME, PREDICTOR_MODEL, settings, predictor, settings.max_inflight_studies)
        self.class_names: list[str] = []
        self.thresholds = Thresholds(settings.dicom.score_threshold, settings.dicom.nms_iou,
                                     settings.dicom.quality_threshold)
        self.device = Device.for_model(PREDICTOR_MODEL, b"")
        self.clinical_use = UNKNOWN_MODEL
        self.calibration: RiskCalibration | None = None
        # One set of pools per process bounds concurrent decoding across requests (a 4096x3328 view holds ~40 MB).
        self.pools = DecodePools(settings.dicom)
        self.memory = MemoryBudget(settings.dicom.max_inflight_memory_bytes, self.name)

    def load(self) -> bool:
        folder = self.settings.model_repository / PREDICTOR_MODEL
        self.class_names = (folder / "labels.txt").read_text().split()
        self.thresholds = resolve_thresholds(self.settings, folder)
        self.calibration = load_calibration(folder)
        if self.calibration is None:
            logger.warning("%s has no %s: the study risk is served uncalibrated (risk_calibrated=false)",
                           PREDICTOR_MODEL, CALIBRATION_FILE)
        # The SR's Algorithm Version and the response's model_version are one string (versions.py).
        self.device = Device.for_model(PREDICTOR_MODEL, self.read_artifact().fingerprint)
        self.clinical_use = read_clinical_use(folder)
        if not self.clinical_use.cleared:
            logger.warning("%s is served labelled: %s", PREDICTOR_MODEL, self.clinical_use.notice)
        # pydicom's reading warnings quote element values, which may be patient data: they must not reach a log.
        pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
        # Views are processed in parallel by the pool; OpenCV's own threads would only oversubscribe the cores.
        cv2.setNumThreads(1)
        self.ready = True
        return self.ready

    def start(self) -> None:
        super().start()
        if self.settings.dicom.decode_in_processes:
            # Spawning the decoder processes takes a second or two; do it now, off the request path.
            threading.Thread(target=self._warm_up, name="dicom-warm-up", daemon=True).start()

    def _warm_up(self) -> None:
        try:
            self.pools.warm_up()
        except Exception as error:  # noqa: BLE001 - a failed warm-up only means the first request starts them
            logger.warning("decoder processes did not start ahead of requests: %s", type(error).__name__)

    def stop(self) -> None:
        self.pools.shutdown()
        super().stop()

    def clinical_use_parameters(self) -> dict[str, Any]:
        """What every response and the metadata say about clinical use (the model card's label)."""
        labelling: dict[str, Any] = {"cleared_for_clinical_use": self.clinical_use.cleared}
        if self.clinical_use.notice is not None:
            labelling["clinical_use_notice"] = self.clinical_use.notice
        return labelling

    def metadata_parameters(self) -> dict[str, Any]:
        return {**super().metadata_parameters(), "labels": ",".join(self.class_names),
                **self.clinical_use_parameters()}

    async def input_geometry(self) -> tuple[int, int, int, str]:
        """(C, H, W, datatype) of the detector input, from the predictor's v2 metadata."""
        metadata = await self.predictor_metadata()
        spec = metadata.inputs.get(INPUT_NAME)
        if spec is None or len(spec.shape) != 4:
            raise PredictorError(f"predictor model {PREDICTOR_MODEL!r} has no input {INPUT_NAME!r} [B, C, H, W]")
        channels, height, width = (int(v) for v in spec.shape[1:])
        if min(channels, height, width) < 1 or spec.datatype not in ("FP32", "FP16"):
            raise PredictorError(
                f"predictor input {INPUT_NAME!r} is {spec.datatype} {list(spec.shape)}; the transformer needs "
                "FP32 or FP16 with fixed C, H, W"
            )
        return channels, height, width, spec.datatype

    async def preprocess(self, payload: InferRequest, headers: dict[str, str] | None = None) -> PreparedStudy:
        with stage(self.name, "intake"):
            parameters = request_parameters(payload)
            report = parameters.get("report")
            if report is not None and report not in REPORT_FORMATS:
                raise BadRequest(f"parameter 'report' must be one of {list(REPORT_FORMATS)}, got {str(report)[:20]!r}")
            blobs = decode_blobs(payload, self.contract.input.name)
            PAYLOAD_BYTES.labels(self.name).observe(sum(len(blob) for blob in blobs))
            images = read_study(blobs, self.settings.dicom)
            dicom = self.settings.dicom
            needed = study_preparation_bytes(blobs, images, dicom.resolution_aware, dicom.max_study_memory_bytes)
        _, height, width, _ = await self.input_geometry()
        with self.memory.reserve(needed):
            prepared = await prepare_study(blobs, images, (height, width), self.pools, self.name)
        return PreparedStudy(request=payload, images=images, prepared=prepared, report=report == "sr")

    async def predict(self, prepared: PreparedStudy, headers: dict[str, str] | None = None) -> Any:
        channels, _, _, datatype = await self.input_geometry()
        batch = np.stack([item.pixels for item in prepared.prepared])[:, None]
        if channels > 1:
            batch = np.repeat(batch, channels, axis=1)
        batch = batch.astype(np.float16 if datatype == "FP16" else np.float32, copy=False)
        with stage(self.name, "predictor"):
            outputs = await self.predictor.infer(PREDICTOR_MODEL, {INPUT_NAME: batch}, list(OUTPUT_NAMES))
        count = len(prepared.prepared)
        for name in OUTPUT_NAMES:
            if outputs[name].shape[0] != count:
                raise PredictorError(f"predictor output {name!r} has batch {outputs[name].shape[0]}, sent {count}")
        return prepared, outputs

    async def postprocess(
        self, result: Any, headers: dict[str, str] | None = None, response_headers: dict[str, str] | None = None
    ) -> InferResponse:
        prepared, outputs = result
        with stage(self.name, "postprocess"):
            findings = collect_findings(outputs, prepared.prepared, self.class_names, self.thresholds,
                                        self.calibration)
        blobs = {}
        if prepared.report:
            with stage(self.name, "report"):
                blobs["report"] = build_report(prepared.images, findings, self.device,
                                               clinical_use=self.clinical_use,
                                               series=SeriesLabel.from_settings(self.settings.dicom))
        return self.respond(
            prepared.request,
            self._outputs(findings),
            blobs=blobs,
            parameters={"images": json.dumps(self._image_parameters(prepared, findings)),
                        "risk_calibrated": findings.risk_calibrated, **self.clinical_use_parameters()},
        )

    @staticmethod
    def _outputs(findings: StudyFindings) -> dict[str, np.ndarray]:
        return {
            "boxes": findings.boxes.astype(np.float32).reshape(-1, 4),
            "scores": findings.scores.astype(np.float32),
            "labels": bytes_tensor(findings.labels),
            "image_index": findings.image_index.astype(np.int32),
            "quality": findings.quality.astype(np.float32),
            "risk": np.array([findings.risk], dtype=np.float32),
        }

    @staticmethod
    def _image_parameters(prepared: PreparedStudy, findings: StudyFindings) -> list[dict[str, Any]]:
        return [
            {
                "index": item.image.index,
                "sop_instance_uid": item.image.header.sop_instance_uid,
                "laterality": item.image.laterality,
                "view": item.image.view,
                "diagnostic": diagnostic,
                "voi": item.voi,
            }
            for item, diagnostic in zip(prepared.prepared, findings.diagnostic)
        ]
