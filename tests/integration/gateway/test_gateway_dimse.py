"""The gateway with real peers: dcmtk's storescu as the modality, storescp as the PACS, the real mammography
stack behind it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread

from .conftest import require_binary, storescu

pytestmark = pytest.mark.integration


def check_sr(path: Path, study_files: list[Path]) -> None:
    """The SR is a valid TID 1500 SR of the same study, referencing the sources (dciodvfy, dsrdump)."""
    sr = dcmread(path)
    source = dcmread(study_files[0], stop_before_pixels=True)
    assert sr.Modality == "SR"
    assert sr.StudyInstanceUID == source.StudyInstanceUID
    assert sr.SeriesInstanceUID != source.SeriesInstanceUID
    assert sr.PatientID == source.PatientID
    referenced = {
        ref.ReferencedSOPInstanceUID
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for ref in series.ReferencedSOPSequence}
    assert referenced == {str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in study_files}
    verify = subprocess.run([require_binary("dciodvfy", "dicom3tools"), str(path)], check=False, capture_output=True,
                            text=True)
    errors = [line for line in (verify.stdout + verify.stderr).splitlines() if line.startswith("Error")]
    assert not errors, errors
    dump = subprocess.run([require_binary("dsrdump", "dcmtk"), str(path)], check=False, capture_output=True,
                          text=True)
    assert dump.returncode == 0, dump.stderr
    assert "Imaging Measurement Report" in dump.stdout


def test_four_view_study_comes_back_as_one_sr(mammography_stack, gateway_factory, destination, study_files):
    gateway = gateway_factory(INFERENCE_URL=mammography_stack.transformer_http, ALLOWED_CALLING_AES="MODALITY",
                              DESTINATIONS=destination.destination, STABLE_SECONDS=600).start()
    sent = storescu(gateway.port, study_files, extra=("-xv",))
    assert sent.returncode == 0, sent.stderr
    # The 4 screening views complete the study at once: no waiting out the 600 s quiet period.
    (sr_file,) = destination.wait_for(1, timeout_s=120)
    check_sr(sr_file, study_files)
    (study,) = gateway.wait_for("exported")
    assert study["instances"] == 4
    assert 'duet_gateway_instances_received_total{transport="dimse"} 4.0' in gateway.metrics()
