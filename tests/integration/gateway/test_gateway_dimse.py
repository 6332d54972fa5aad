"""The gateway with real peers: dcmtk's storescu as the modality, storescp as the PACS, the real mammography
stack behind it."""

from __future__ import annotations

import subprocess
import time
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
        for ref in series.ReferencedSOPSequence
    }
    assert referenced == {str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in study_files}
    verify = subprocess.run(
        [require_binary("dciodvfy", "dicom3tools"), str(path)], check=False, capture_output=True, text=True
    )
    errors = [line for line in (verify.stdout + verify.stderr).splitlines() if line.startswith("Error")]
    assert not errors, errors
    dump = subprocess.run(
        [require_binary("dsrdump", "dcmtk"), str(path)], check=False, capture_output=True, text=True
    )
    assert dump.returncode == 0, dump.stderr
    assert "Imaging Measurement Report" in dump.stdout


def test_four_view_study_comes_back_as_sr_and_secondary_captures(
    mammography_stack, gateway_factory, destination, study_files
):
    gateway = gateway_factory(
        INFERENCE_URL=mammography_stack.transformer_http,
        ALLOWED_CALLING_AES="MODALITY",
        DESTINATIONS=destination.destination,
        STABLE_SECONDS=600,
        SECONDARY_CAPTURE="true",
    ).start()
    sent = storescu(gateway.port, study_files, extra=("-xv",))
    assert sent.returncode == 0, sent.stderr
    # The 4 screening views complete the study at once: no waiting out the 600 s quiet period.
    received = destination.wait_for(5, timeout_s=120)
    modalities = sorted(dcmread(path, stop_before_pixels=True).Modality for path in received)
    assert modalities == ["OT", "OT", "OT", "OT", "SR"]
    (sr_file,) = [path for path in received if dcmread(path, stop_before_pixels=True).Modality == "SR"]
    check_sr(sr_file, study_files)
    (study,) = gateway.wait_for("exported")
    assert study["instances"] == 4
    # No patient data in the gateway's log (the synthetic patients have random names, IDs and birth dates).
    log = gateway.log.read_text()
    patient = dcmread(study_files[0], stop_before_pixels=True)
    for value in (
        str(patient.PatientName),
        patient.PatientID,
        patient.PatientBirthDate,
        patient.StudyInstanceUID,
    ):
        assert value not in log
    assert '"audit": "export"' in log and '"audit": "association"' in log
    assert 'duet_gateway_instances_received_total{transport="dimse"} 4.0' in gateway.metrics()


def test_a_study_split_over_two_associations_with_duplicates_is_one_job(
    mammography_stack, gateway_factory, destination, study_files
):
    gateway = gateway_factory(
        INFERENCE_URL=mammography_stack.transformer_http,
        ALLOWED_CALLING_AES="MODALITY",
        DESTINATIONS=destination.destination,
        STABLE_SECONDS=3,
    ).start()
    assert storescu(gateway.port, study_files[:2]).returncode == 0
    # The second association repeats one instance (a resend after a timeout, say) and brings one more view.
    assert storescu(gateway.port, study_files[1:3]).returncode == 0
    (sr_file,) = destination.wait_for(1)
    (study,) = gateway.wait_for("exported")
    assert study["instances"] == 3
    assert len(gateway.studies()) == 1
    referenced = {
        ref.ReferencedSOPInstanceUID
        for s in dcmread(sr_file).CurrentRequestedProcedureEvidenceSequence
        for series in s.ReferencedSeriesSequence
        for ref in series.ReferencedSOPSequence
    }
    assert referenced == {str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in study_files[:3]}
    assert 'duet_gateway_instances_received_total{transport="dimse"} 3.0' in gateway.metrics()


def test_unknown_calling_ae_is_refused(gateway_factory, study_files):
    gateway = gateway_factory(ALLOWED_CALLING_AES="MODALITY@127.0.0.1,OTHER@10.9.9.9").start()
    echo = [require_binary("echoscu", "dcmtk"), "-aec", "DUET", "127.0.0.1", str(gateway.port)]
    assert subprocess.run([*echo[:1], "-aet", "MODALITY", *echo[1:]], check=False).returncode == 0
    refused = subprocess.run(
        [*echo[:1], "-aet", "STRANGER", *echo[1:]], check=False, capture_output=True, text=True
    )
    assert refused.returncode != 0
    assert "Calling AE Title Not Recognized" in refused.stdout + refused.stderr
    # An allowed title from another host than its entry names is refused too.
    assert (
        subprocess.run([*echo[:1], "-aet", "OTHER", *echo[1:]], check=False, capture_output=True).returncode
        != 0
    )
    assert storescu(gateway.port, study_files[:1], calling_ae="STRANGER").returncode != 0
    assert gateway.studies() == []
    assert 'duet_gateway_associations_total{outcome="rejected"} 3.0' in gateway.metrics()


def test_unsupported_sop_class_and_transfer_syntax_are_refused_at_negotiation(gateway_factory, study_files):
    from pydicom.data import get_testdata_file
    from pydicom.uid import JPEGLosslessSV1
    from pynetdicom import AE
    from pynetdicom.sop_class import DigitalMammographyXRayImageStorageForPresentation as MG
    from pynetdicom.sop_class import Verification

    gateway = gateway_factory(ALLOWED_CALLING_AES="MODALITY").start()
    ct = get_testdata_file("CT_small.dcm")
    sent = storescu(gateway.port, [Path(ct)])
    assert sent.returncode != 0
    assert "no presentation context" in (sent.stdout + sent.stderr).lower()
    scu = AE(ae_title="MODALITY")
    scu.add_requested_context(MG, [JPEGLosslessSV1])
    scu.add_requested_context(Verification)
    association = scu.associate("127.0.0.1", gateway.port, ae_title="DUET")
    try:
        assert association.is_established
        assert [cx.abstract_syntax for cx in association.accepted_contexts] == [Verification]
        assert [cx.transfer_syntax[0] for cx in association.rejected_contexts] == [JPEGLosslessSV1]
    finally:
        association.release()
    # The gateway is still there and still stores a good image.
    assert storescu(gateway.port, study_files[:1]).returncode == 0
    assert gateway.studies()[0]["instances"] == 1


def test_past_the_study_size_limit_the_status_is_out_of_resources(gateway_factory, study_files):
    limit = study_files[0].stat().st_size + study_files[1].stat().st_size + 10
    gateway = gateway_factory(ALLOWED_CALLING_AES="MODALITY", MAX_STUDY_BYTES=limit).start()
    sent = storescu(gateway.port, study_files, extra=("-v",))
    # storescu stops at the first refusal: the third image.
    assert "Received Store Response (Refused: OutOfResources)" in sent.stdout + sent.stderr
    (study,) = gateway.studies()
    assert study["instances"] == 2
    assert 'duet_gateway_instances_refused_total{reason="out_of_resources"} 1.0' in gateway.metrics()


def test_past_max_associations_a_new_association_is_rejected(gateway_factory):
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    gateway = gateway_factory(ALLOWED_CALLING_AES="MODALITY", MAX_ASSOCIATIONS=1).start()
    scu = AE(ae_title="MODALITY")
    scu.add_requested_context(Verification)
    held = scu.associate("127.0.0.1", gateway.port, ae_title="DUET")
    try:
        assert held.is_established
        second = subprocess.run(
            [
                require_binary("echoscu", "dcmtk"),
                "-aet",
                "MODALITY",
                "-aec",
                "DUET",
                "127.0.0.1",
                str(gateway.port),
            ],
            check=False,
            capture_output=True,
            text=True,
        )
        assert second.returncode != 0
        assert "Local Limit Exceeded" in second.stdout + second.stderr
    finally:
        held.release()
    assert (
        subprocess.run(
            ["echoscu", "-aet", "MODALITY", "-aec", "DUET", "127.0.0.1", str(gateway.port)], check=False
        ).returncode
        == 0
    )
    assert 'duet_gateway_associations_total{outcome="rejected"} 1.0' in gateway.metrics()
    # The rejected association never counted as open: the gauge is back at 0 once the others are released.
    deadline = time.monotonic() + 10
    while "duet_gateway_associations_active 0.0" not in gateway.metrics():
        assert time.monotonic() < deadline, gateway.metrics()
        time.sleep(0.1)
