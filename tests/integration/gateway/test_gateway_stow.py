"""STOW-RS into the gateway with dicomweb-client, answered by a PS3.18 store response."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread
from pydicom.data import get_testdata_file

pytestmark = pytest.mark.integration


def test_stow_rs_stores_one_study_and_names_what_it_refused(gateway_factory, study_files):
    gateway = gateway_factory(INFERENCE_URL="http://127.0.0.1:9", STABLE_SECONDS=600).start()
    client = DICOMwebClient(gateway.http)
    answer = client.store_instances([dcmread(path) for path in study_files[:2]])
    stored = {item.ReferencedSOPInstanceUID for item in answer.ReferencedSOPSequence}
    assert stored == {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in study_files[:2]}
    assert "FailedSOPSequence" not in answer
    # Resent with a CT image: the MG instance is stored once more (a duplicate), the CT is refused by class.
    ct = dcmread(get_testdata_file("CT_small.dcm"))
    answer = client.store_instances([dcmread(study_files[0]), ct])
    (failed,) = answer.FailedSOPSequence
    assert failed.ReferencedSOPInstanceUID == ct.SOPInstanceUID
    assert failed.FailureReason == 0x0122
    assert len(answer.ReferencedSOPSequence) == 1
    (study,) = gateway.studies()
    assert study["instances"] == 2
    # One request is one study: it is complete at once, without the 600 s quiet period.
    gateway.wait_for("pending")
    assert 'duet_gateway_instances_received_total{transport="stow"} 2.0' in gateway.metrics()


def test_stow_rs_refuses_a_body_that_is_not_multipart_related(gateway_factory, study_files):
    gateway = gateway_factory().start()
    answer = httpx.post(
        f"{gateway.http}/studies",
        content=Path(study_files[0]).read_bytes(),
        headers={"Content-Type": "application/dicom"},
    )
    assert answer.status_code == 415
    assert "multipart/related" in answer.json()["error"]
    answer = httpx.post(
        f"{gateway.http}/studies",
        content=b"--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x--\r\n",
        headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=x'},
    )
    assert answer.status_code == 415
    assert "text/plain" in answer.json()["error"]
    assert gateway.studies() == []
