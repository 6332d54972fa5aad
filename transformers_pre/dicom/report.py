"""The study's findings as a DICOM Comprehensive 3D SR holding a TID 1500 Measurement Report (highdicom).

The SR follows IHE AI Results (AIR): TID 1500 with only the rows the template defines, so PixelMed's
`DicomSRValidator` reports no error and no warning (tests/unit/transformers_pre/dicom/test_sr_template.py; the one
exception, a PixelMed 20220618 defect with exactly one finding, is explained in docs/api.md).
Its tree, row by row, and the IHE AIR requirements it meets are in docs/api.md ("The DICOM SR"). In short:

- observer: the detector as a device (TID 1004: a UID stable per model build, name, manufacturer "duet",
  model name `mammo_detector`); procedure reported: "Imaging procedure" (SCT 363679005), the generic member of
  CID 100, which has no mammography code;
- one TID 1410 group per finding: a closed POLYLINE rectangle (5 points, the box in the source image's pixels:
  column, row with (0, 0) the top left corner of the top left pixel) on its source image, the finding
  ("Mammographic breast mass", "Calcification Cluster" or, for another detector's classes, "Finding"), the
  algorithm (TID 4019: name and version), the finding site (breast, with laterality when known) and the
  detector's score as "Certainty of Finding" in percent, which for masses carries the pathology (DCM 111042:
  Malignant or Benign) as a concept modifier;
- one TID 1501 group per image gated out as non-diagnostic: the image, "Unusable - Quality renders image
  unusable" and its quality as "Image Quality Rating" (0-1);
- one TID 1501 study group: "Probability of cancer" (DCM 111047), the `risk` output (0-1), referencing the
  diagnostic images it was computed from;
- unless the model card clears the model for clinical use, a report-level "Qualitative Evaluations" container
  with a "Comment" that starts "NOT FOR CLINICAL USE", and the same prefix on the Series Description.

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
    CodeContentItem,
    Comprehensive3DSR,
    ContainerContentItem,
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
    RelationshipTypeValues,
    SourceImageForMeasurementGroup,
    SourceImageForRegion,
    TextContentItem,
    TrackingIdentifier,
)
from pydicom import dcmwrite
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from ..clinical_use import NOT_FOR_CLINICAL_USE, UNKNOWN_MODEL, ClinicalUse
from ..errors import Unprocessable
from ..settings import DicomSettings
from ..versions import version_of
from .findings import StudyFindings
from .study import StudyImage

FINDING_TYPES = {
    "malignant_mass": (codes.SCT.MammographicBreastMass, codes.SCT.Malignant),
    "benign_mass": (codes.SCT.MammographicBreastMass, codes.SCT.Benign),
    "calcification": (codes.SCT.CalcificationCluster, None),
}
LATERALITY = {"L": codes.SCT.Left, "R": codes.SCT.Right}
# CID 100 (Quantitative Diagnostic Imaging Procedure), which TID 1500 requires, lists no mammography procedure.
PROCEDURE_REPORTED = codes.SCT.ImagingProcedure
UNUSABLE_IMAGE = Code("111235", "DCM", "Unusable - Quality renders image unusable")
IMAGE_QUALITY_RATING = Code("111029", "DCM", "Image Quality Rating")
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")
# Series Description is an LO (64 characters): DicomSettings caps the configured part at 64 minus the prefix.
DESCRIPTION_PREFIX = f"{NOT_FOR_CLINICAL_USE} - "


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
            # The responses' model_version: one formula (versions.py), so an SR and a response name one build.
            version=version_of(model_name, fingerprint),
        )


@dataclass(frozen=True)
class SeriesLabel:
    """Where the SR goes in the study: its series number and description (DicomSettings `sr_series_*`)."""

    number: int
    description: str

    @classmethod
    def from_settings(cls, dicom: DicomSettings) -> SeriesLabel:
        return cls(number=dicom.sr_series_number, description=dicom.sr_series_description)

    @classmethod
    def default(cls) -> SeriesLabel:
        fields = DicomSettings.model_fields
        return cls(number=fields["sr_series_number"].default, description=fields["sr_series_description"].default)

    def describe(self, clinical_use: ClinicalUse) -> str:
        """The Series Description, prefixed with the label while the model is not cleared."""
        return self.description if clinical_use.cleared else DESCRIPTION_PREFIX + self.description


def _finding_type(label: str) -> tuple[Code, Code | None]:
    if label in FINDING_TYPES:
        return FINDING_TYPES[label]
    # A detector with other classes: a generic finding; the class name stays in the tracking identifier.
    return codes.DCM.Finding, None


def _polyline(box: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = (float(v) for v in box)
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float32)


def _site(image: StudyImage) -> FindingSite:
    return FindingSite(codes.SCT.Breast, laterality=LATERALITY.get(image.laterality))


def _describe_image(image: StudyImage) -> str:
    return f"image {image.index} ({image.laterality} {image.view})"


def _certainty(score: float, pathology: Code | None, algorithm: AlgorithmIdentification) -> Measurement:
    """The score as "Certainty of Finding" (%). TID 1410 has no row for a qualitative evaluation (PixelMed reports
    one as "not in template"), so a mass's pathology modifies the certainty (TID 300 row 2, concept modifier):
    "certainty 90 % that this finding is a malignant mass"."""
    measurement = Measurement(
        name=codes.DCM.CertaintyOfFinding,
        value=round(float(score) * 100.0, 3),
        unit=codes.UCUM.Percent,
        algorithm_id=algorithm,
    )
    if pathology is not None:
        modifier = CodeContentItem(codes.DCM.Pathology, pathology, RelationshipTypeValues.HAS_CONCEPT_MOD)
        item = measurement[0]
        item.ContentSequence = DicomSequence([modifier, *getattr(item, "ContentSequence", [])])
    return measurement


def _finding_groups(
    images: Sequence[StudyImage], findings: StudyFindings, algorithm: AlgorithmIdentification
) -> list[PlanarROIMeasurementsAndQualitativeEvaluations]:
    by_index = {image.index: image for image in images}
    groups = []
    for number, (box, score, label, index) in enumerate(
        zip(findings.boxes, findings.scores, findings.labels, findings.image_index), start=1
    ):
        image = by_index[int(index)]
        ds = image.header.dataset
        finding_type, pathology = _finding_type(label)
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
                finding_sites=[_site(image)],
                measurements=[_certainty(float(score), pathology, algorithm)],
            )
        )
    return groups


def _gated_image_groups(
    images: Sequence[StudyImage], findings: StudyFindings, algorithm: AlgorithmIdentification
) -> list[MeasurementsAndQualitativeEvaluations]:
    """One group per image the quality gate left out: a reader sees which views the findings do not cover."""
    groups = []
    for image, quality, diagnostic in zip(images, findings.quality, findings.diagnostic):
        if diagnostic:
            continue
        groups.append(
            MeasurementsAndQualitativeEvaluations(
                tracking_identifier=TrackingIdentifier(
                    uid=generate_uid(), identifier=f"{_describe_image(image)}: not diagnostic, not analysed"
                ),
                finding_type=UNUSABLE_IMAGE,
                algorithm_id=algorithm,
                finding_sites=[_site(image)],
                source_images=[_source(image)],
                measurements=[
                    Measurement(
                        name=IMAGE_QUALITY_RATING,
                        value=round(float(quality), 6),
                        unit=codes.UCUM.NoUnits,
                        algorithm_id=algorithm,
                    )
                ],
            )
        )
    return groups


def _source(image: StudyImage) -> SourceImageForMeasurementGroup:
    ds = image.header.dataset
    return SourceImageForMeasurementGroup(str(ds.SOPClassUID), str(ds.SOPInstanceUID))


def _study_group(
    images: Sequence[StudyImage], findings: StudyFindings, algorithm: AlgorithmIdentification
) -> MeasurementsAndQualitativeEvaluations:
    """The study risk, referencing the diagnostic images it was computed from."""
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=generate_uid(), identifier="study"),
        algorithm_id=algorithm,
        finding_sites=[FindingSite(codes.SCT.Breast)],
        source_images=[_source(image) for image, usable in zip(images, findings.diagnostic) if usable],
        measurements=[
            Measurement(
                name=codes.DCM.ProbabilityOfCancer,
                value=round(float(findings.risk), 6),
                unit=codes.UCUM.NoUnits,
                algorithm_id=algorithm,
            )
        ],
    )


def _notice(text: str) -> ContainerContentItem:
    """TID 1500 rows 12 and 14: a report-level "Qualitative Evaluations" container holding a TEXT item, which
    viewers show with the report."""
    container = ContainerContentItem(QUALITATIVE_EVALUATIONS, relationship_type=RelationshipTypeValues.CONTAINS)
    container.ContentSequence = DicomSequence(
        [TextContentItem(codes.DCM.Comment, text, RelationshipTypeValues.CONTAINS)]
    )
    return container


def build_report(
    images: Sequence[StudyImage],
    findings: StudyFindings,
    device: Device,
    *,
    clinical_use: ClinicalUse = UNKNOWN_MODEL,
    series: SeriesLabel | None = None,
) -> bytes:
    """The SR as DICOM Part 10 bytes. `images` are the request's images (header-only datasets, request order),
    `findings.quality` and `findings.diagnostic` in the same order. `series`: DicomSettings' defaults unless given."""
    series = series or SeriesLabel.default()
    # TID 4019 has no row for a manufacturer (it is the device observer's), so none is given here.
    algorithm = AlgorithmIdentification(name=device.name, version=device.version)
    observer = ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=device.uid, name=device.name, manufacturer_name="duet", model_name=device.model_name
        ),
    )
    groups: list = [
        *_finding_groups(images, findings, algorithm),
        *_gated_image_groups(images, findings, algorithm),
        _study_group(images, findings, algorithm),
    ]
    report = MeasurementReport(
        observation_context=ObservationContext(observer_device_context=observer),
        procedure_reported=PROCEDURE_REPORTED,
        imaging_measurements=groups,
    )
    if clinical_use.notice is not None:
        report[0].ContentSequence.append(_notice(clinical_use.notice))
    evidence: list[Dataset] = [image.header.dataset for image in images]
    try:
        sr = Comprehensive3DSR(
            evidence=evidence,
            content=report,
            series_instance_uid=generate_uid(),
            series_number=series.number,
            sop_instance_uid=generate_uid(),
            instance_number=1,
            manufacturer="duet",
            is_complete=True,
            series_description=series.describe(clinical_use),
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
