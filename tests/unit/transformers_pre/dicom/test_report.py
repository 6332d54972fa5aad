"""The TID 1500 SR: written with highdicom, read back with highdicom.sr, every promised item present."""

from __future__ import annotations

from io import BytesIO

import highdicom as hd
import numpy as np
import pytest
from pydicom.sr.codedict import codes

from duet.synthetic_dicom import synth_study
from transformers_pre.dicom.findings import StudyFindings
from transformers_pre.dicom.report import Device, build_report
from transformers_pre.dicom.study import read_study
from transformers_pre.settings import DicomSettings


@pytest.fixture(scope="module")
def case():
    study = synth_study(31, images=3, rows=64, columns=52)
    images = read_study([image.to_bytes() for image in study], DicomSettings())
    findings = StudyFindings(
        boxes=np.array([[10, 20, 50, 60], [5.5, 5.25, 30, 40], [1, 2, 3, 4]], np.float32),
        scores=np.array([0.9, 0.4, 0.35], np.float32),
        labels=["malignant_mass", "calcification", "benign_mass"],
        image_index=np.array([0, 1, 2], np.int32),
        quality=np.array([0.9, 0.8, 0.7], np.float32),
        diagnostic=[True, True, True],
        malignancy=np.array([0.7, 0.1, 0.2], np.float32),
        risk=0.784,
    )
    device = Device.for_model("mammo_detector", b"model bytes")
    sr = hd.sr.srread(BytesIO(build_report(images, findings, device)))
    return study, findings, device, sr


def test_sr_is_a_comprehensive_3d_sr_of_the_same_study_and_patient(case) -> None:
    study, _, _, sr = case
    source = study[0].dataset
    assert isinstance(sr, hd.sr.Comprehensive3DSR)
    assert sr.StudyInstanceUID == source.StudyInstanceUID
    assert (sr.PatientName, sr.PatientID, sr.PatientBirthDate) == (
        source.PatientName, source.PatientID, source.PatientBirthDate)
    referenced = {
        item.ReferencedSOPInstanceUID
        for evidence in sr.CurrentRequestedProcedureEvidenceSequence
        for series in evidence.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert referenced == {str(image.dataset.SOPInstanceUID) for image in study}


def test_each_finding_is_a_polyline_on_its_source_image(case) -> None:
    study, findings, _, sr = case
    groups = sr.content.get_planar_roi_measurement_groups()
    assert len(groups) == 3
    for group, box, index, label, score in zip(groups, findings.boxes, findings.image_index, findings.labels,
                                               findings.scores):
        assert group.roi.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
        x0, y0, x1, y1 = box
        np.testing.assert_allclose(group.roi.value, [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])
        source = group.roi.ContentSequence[0].ReferencedSOPSequence[0]
        assert source.ReferencedSOPInstanceUID == study[index].dataset.SOPInstanceUID
        assert label in str(group.tracking_identifier)
        (certainty,) = group.get_measurements()
        assert certainty.name == codes.DCM.CertaintyOfFinding
        assert certainty.value == pytest.approx(float(score) * 100, abs=1e-3)
    assert groups[0].finding_type == codes.SCT.MammographicBreastMass
    assert pathology_of(groups[0]) == codes.SCT.Malignant
    assert groups[1].finding_type == codes.SCT.CalcificationCluster
    assert pathology_of(groups[1]) is None
    assert pathology_of(groups[2]) == codes.SCT.Benign


def pathology_of(group: hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations) -> hd.sr.CodedConcept | None:
    """The Pathology concept modifier of the group's "Certainty of Finding" (TID 300 row 2), if any."""
    (certainty,) = group.get_measurements(name=codes.DCM.CertaintyOfFinding)
    modifiers = [item for item in certainty[0].ContentSequence if item.name == codes.DCM.Pathology]
    return modifiers[0].value if modifiers else None


def test_study_probability_of_cancer_and_device_observer(case) -> None:
    _, findings, device, sr = case
    (group,) = sr.content.get_image_measurement_groups()
    (measurement,) = group.get_measurements(name=codes.DCM.ProbabilityOfCancer)
    assert measurement.value == pytest.approx(findings.risk)
    assert measurement.unit == codes.UCUM.NoUnits
    (observer,) = sr.content.get_observer_contexts(observer_type=codes.DCM.Device)
    assert observer.observer_identifying_attributes.uid == device.uid
    assert observer.observer_identifying_attributes.name == "duet mammo_detector"


def test_device_uid_is_stable_per_model_build() -> None:
    assert Device.for_model("m", b"a").uid == Device.for_model("m", b"a").uid
    assert Device.for_model("m", b"a").uid != Device.for_model("m", b"b").uid
