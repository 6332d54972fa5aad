"""Orthanc (Debian's) as the hospital PACS: it C-STOREs a study to the gateway through its REST API, and the
SR comes back to it by C-STORE, found there over QIDO-RS."""

from __future__ import annotations

import time

import httpx
import pytest
from pydicom import dcmread

from .conftest import Orthanc

pytestmark = pytest.mark.integration


def test_orthanc_sends_a_study_and_gets_the_sr_back(
    mammography_stack, gateway_factory, study_files, tmp_path
):
    orthanc = Orthanc(tmp_path / "orthanc")
    gateway = gateway_factory(
        INFERENCE_URL=mammography_stack.transformer_http,
        ALLOWED_CALLING_AES="ORTHANC@127.0.0.1",
        DESTINATIONS=orthanc.destination,
    )
    orthanc.start({"duet": ("DUET", gateway.port)})
    try:
        gateway.start()
        for path in study_files:
            assert (
                httpx.post(f"{orthanc.http}/instances", content=path.read_bytes(), timeout=30).status_code
                == 200
            )
        study_uid = str(dcmread(study_files[0], stop_before_pixels=True).StudyInstanceUID)
        (found,) = httpx.post(f"{orthanc.http}/tools/lookup", content=study_uid, timeout=10).json()
        sent = httpx.post(
            f"{orthanc.http}/modalities/duet/store",
            json={"Resources": [found["ID"]], "Synchronous": True},
            timeout=120,
        )
        assert sent.status_code == 200, sent.text
        deadline = time.monotonic() + 120
        series: list = []
        while time.monotonic() < deadline and not series:
            series = httpx.get(
                f"{orthanc.http}/dicom-web/studies/{study_uid}/series", params={"Modality": "SR"}, timeout=10
            ).json()
            time.sleep(0.5)
        assert len(series) == 1, gateway.studies()
        (study,) = gateway.wait_for("exported")
        assert study["instances"] == 4
        assert study["exports"][0]["destination"] == orthanc.destination
    finally:
        orthanc.stop()
