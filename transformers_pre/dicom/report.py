"""The study's findings as a DICOM Comprehensive 3D SR holding a TID 1500 Measurement Report (highdicom).

Content:
- observer: the detector as a device observer (DeviceObserverIdentifyingAttributes: a stable UID per model build,
  name, manufacturer "duet", model name `mammo_detector`);
- one Planar ROI group per finding: a closed POLYLINE rectangle (5 points, the box in the source image's
  pixels: column, row with (0, 0) the top left corner of the top left pixel) on its source image, finding type
  "Mammographic breast mass" or "Calcification Cluster" (SNOMED CT), masses with a qualitative evaluation
  Pathology (DCM 111042) = Malignant or Benign, the finding site (breast, with laterality when known), and the detector's score
  as "Certainty of Finding" in percent (0-100);
- one study-level group: "Probability of cancer" (DCM 111047), the `risk` output, unit "no units" (0-1).

The patient and study modules are copied by highdicom from the source images (the evidence); the SR is returned
to the client and never logged. Source images whose patient or study attributes cannot be copied (an invalid
birth date, say) make the report a 422 whose message quotes no value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO

import numpy as np
from highdicom.sr import (
    AlgorithmIdentification,
    Comprehensive3DSR,
    DeviceObserverIdentifyingAttributes,
    FindingSite,
    GraphicTypeValues,
    ImageRegion,
    Measurement,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    PlanarROIMeasurementsAndQualitativeEvaluations,
    QualitativeEvaluation,
    SourceImageForRegion,
    TrackingIdentifier,
)
from pydicom import dcmwrite
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from ..errors import Unprocessable
from .findings import StudyFindings
from .study import StudyImage

FINDING_TYPES = {
    "malignant_mass": (codes.SCT.MammographicBreastMass, codes.SCT.Malignant),
    "benign_mass": (codes.SCT.MammographicBreastMass, codes.SCT.Benign),
    "calcification": (codes.SCT.CalcificationCluster, None),
}
LATERALITY = {"L": codes.SCT.Left, "R": codes.SCT.Right}
SR_SERIES_NUMBER = 9001


@dataclass(frozen=True)
class Device:
    """The model recorded as the SR's device observer."""

    uid: str
    name: str
    model_name: str
    version: str

    @classmethod
    def for_model(cls, model_name: str, fingerprint: bytes) -> Device:
        """A device whose UID is stable for one model build (`fingerprint`: e.g. the model file's bytes hash)."""
        digest = hashlib.sha256(model_name.encode() + b"/" + fingerprint).digest()
        return cls(
            uid=f"2.25.{int.from_bytes(digest[:16], 'big') >> 1}",
            name=f"duet {model_name}",
            model_name=model_name,
            version=digest[:6].hex(),
        )


def _finding_type(label: str) -> tuple[Code, Code | None]:
    if label in FINDING_TYPES:
        return FINDING_TYPES[label]
    # A detector with other classes: a generic finding; the class name stays in the tracking identifier.
    return codes.DCM.Finding, None


def _polyline(box: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = (float(v) for v in box)
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float32)


def build_report(
    images: Sequence[StudyImage],
    findings: StudyFindings,
    device: Device,
) -> bytes:
    """The SR as DICOM Part 10 bytes. `images` are the request's images (header-only datasets, request order)."""
    by_index = {image.index: image for image in images}
    algorithm = AlgorithmIdentification(name=device.name, version=device.version, manufacturer="duet")
    observer = ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=device.uid, name=device.name, manufacturer_name="duet", model_name=device.model_name
        ),
    )
    groups: list = []
    for number, (box, score, label, index) in enumerate(
        zip(findings.boxes, findings.scores, findings.labels, findings.image_index), start=1
    ):
        image = by_index[int(index)]
        ds = image.header.dataset
        finding_type, evaluation = _finding_type(label)
        site = FindingSite(codes.SCT.Breast, laterality=LATERALITY.get(image.laterality))
        groups.append(
            PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=TrackingIdentifier(uid=generate_uid(), identifier=f"finding {number}: {label}"),
                referenced_region=ImageRegion(
                    graphic_type=GraphicTypeValues.POLYLINE,
                    graphic_data=_polyline(box),
                    source_image=SourceImageForRegion(str(ds.SOPClassUID), str(ds.SOPInstanceUID)),
                ),
                finding_type=finding_type,
                algorithm_id=algorithm,
                finding_sites=[site],
                measurements=[
                    Measurement(
                        name=codes.DCM.CertaintyOfFinding,
                        value=round(float(score) * 100.0, 3),
                        unit=codes.UCUM.Percent,
                        algorithm_id=algorithm,
                    )
                ],
                qualitative_evaluations=(
                    [QualitativeEvaluation(codes.DCM.Pathology, evaluation)] if evaluation is not None else None
                ),
            )
        )
    groups.append(
        MeasurementsAndQualitativeEvaluations(
            tracking_identifier=TrackingIdentifier(uid=generate_uid(), identifier="study"),
            algorithm_id=algorithm,
            finding_sites=[FindingSite(codes.SCT.Breast)],
            measurements=[
                Measurement(
                    name=codes.DCM.ProbabilityOfCancer,
                    value=round(float(findings.risk), 6),
                    unit=codes.UCUM.NoUnits,
                    algorithm_id=algorithm,
                )
            ],
        )
    )
    report = MeasurementReport(
        observation_context=ObservationContext(observer_device_context=observer),
        procedure_reported=codes.SCT.Mammography,
        imaging_measurements=groups,
    )
    evidence: list[Dataset] = [image.header.dataset for image in images]
    try:
        sr = Comprehensive3DSR(
            evidence=evidence,
            content=report,
            series_instance_uid=generate_uid(),
            series_number=SR_SERIES_NUMBER,
            sop_instance_uid=generate_uid(),
            instance_number=1,
            manufacturer="duet",
            is_complete=True,
        )
        buffer = BytesIO()
        dcmwrite(buffer, sr, enforce_file_format=True)
    except (ValueError, TypeError, AttributeError, KeyError) as error:
        # highdicom and pydicom quote the offending value (a birth date, a name): never pass their text on.
        raise Unprocessable(
            "the DICOM SR cannot be built: the source images' patient or study attributes are invalid "
            f"({type(error).__name__}); ask without 'report' to get the findings"
        ) from None
    return buffer.getvalue()
