"""Nothing lost across a crash: the gateway process is killed with SIGKILL at each stage and restarted on the
same spool; the study completes and its SR reaches the destination exactly once. Also: a destination that is
down when the result is ready gets it once after it comes back."""

from __future__ import annotations

import time

import pytest
from pydicom import dcmread

from .conftest import storescu

pytestmark = pytest.mark.integration


def _single_sr(destination, study_files) -> None:
    (sr_file,) = destination.wait_for(1)
    time.sleep(2)  # a second delivery would show up as a second file by now
    assert len(destination.received()) == 1
    sr = dcmread(sr_file)
    assert sr.Modality == "SR"
    assert sr.StudyInstanceUID == dcmread(study_files[0], stop_before_pixels=True).StudyInstanceUID


def test_sigkill_while_half_received(mammography_stack, gateway_factory, destination, study_files):
    gateway = gateway_factory(
        INFERENCE_URL=mammography_stack.transformer_http,
        ALLOWED_CALLING_AES="MODALITY",
        DESTINATIONS=destination.destination,
        STABLE_SECONDS=600,
    ).start()
    assert storescu(gateway.port, study_files[:2]).returncode == 0
    gateway.kill()
    gateway.start()
    (study,) = gateway.studies("receiving")
    assert study["instances"] == 2
    assert storescu(gateway.port, study_files[2:]).returncode == 0
    _single_sr(destination, study_files)
    (study,) = gateway.wait_for("exported")
    assert study["instances"] == 4


def test_sigkill_while_dispatching_to_a_busy_inference_service(
    mammography_stack, gateway_factory, destination, study_files
):
    gateway = gateway_factory(
        INFERENCE_URL=mammography_stack.transformer_http,
        ALLOWED_CALLING_AES="MODALITY",
        DESTINATIONS=destination.destination,
    ).start()
    mammography_stack.stop_predictor()  # the transformer answers 503 + Retry-After meanwhile
    try:
        assert storescu(gateway.port, study_files).returncode == 0
        deadline = time.monotonic() + 60
        while not [s for s in gateway.studies("pending") if s["dispatch_attempts"] >= 1]:
            assert time.monotonic() < deadline, gateway.studies()
            time.sleep(0.2)
        gateway.kill()
    finally:
        mammography_stack.start_predictor()
    gateway.start()
    _single_sr(destination, study_files)
    gateway.wait_for("exported")


def test_destination_down_then_up_and_sigkill_before_export(
    mammography_stack, gateway_factory, destination, study_files
):
    destination.stop()
    gateway = gateway_factory(
        INFERENCE_URL=mammography_stack.transformer_http,
        ALLOWED_CALLING_AES="MODALITY",
        DESTINATIONS=destination.destination,
        EXPORT_MAX_BACKOFF_SECONDS=1,
    ).start()
    assert storescu(gateway.port, study_files).returncode == 0
    deadline = time.monotonic() + 120
    while not [s for s in gateway.studies("dispatched") if s["exports"][0]["attempts"] >= 2]:
        assert time.monotonic() < deadline, gateway.studies()
        time.sleep(0.2)
    assert 'duet_gateway_exports_total{outcome="retry"}' in gateway.metrics()
    gateway.kill()
    gateway.start()
    destination.start()
    _single_sr(destination, study_files)
    (study,) = gateway.wait_for("exported")
    assert study["exports"][0]["state"] == "delivered"


def test_an_export_that_never_succeeds_is_dead_lettered_and_can_be_retried(
    mammography_stack, gateway_factory, destination, study_files
):
    import httpx

    destination.stop()
    gateway = gateway_factory(
        INFERENCE_URL=mammography_stack.transformer_http,
        ALLOWED_CALLING_AES="MODALITY",
        DESTINATIONS=destination.destination,
        EXPORT_MAX_ATTEMPTS=2,
        EXPORT_MAX_BACKOFF_SECONDS=0.5,
    ).start()
    assert storescu(gateway.port, study_files).returncode == 0
    (study,) = gateway.wait_for("dead_letter")
    assert "association" in study["exports"][0]["last_error"]
    assert 'duet_gateway_exports_total{outcome="dead_letter"} 1.0' in gateway.metrics()
    destination.start()
    retried = httpx.post(f"{gateway.http}/api/studies/{study['id']}/retry", timeout=10)
    assert retried.status_code == 200, retried.text
    _single_sr(destination, study_files)
    gateway.wait_for("exported")
    assert httpx.post(f"{gateway.http}/api/studies/{study['id']}/retry", timeout=10).status_code == 409
