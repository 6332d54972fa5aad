"""MammographyModel end to end in-process: real DICOM, real ONNX Runtime (the stand-in detector), real responses.

Only the gRPC hop to Triton is replaced (`InProcessOnnxPredictor`); the integration tests cover it.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import warnings
from io import BytesIO

import highdicom as hd
import numpy as np
import pydicom.config
import pytest
from prometheus_client import REGISTRY

from duet.synthetic_dicom import SynthImage, synth_image, synth_study
from transformers_pre.errors import BadRequest, Unprocessable

ROWS, COLUMNS = 512, 416
STUDY_SEED = 41


def _with_pixels(image: SynthImage, pixels: np.ndarray, center: float = 2048, width: float = 4096) -> bytes:
    ds = image.dataset
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.WindowCenter, ds.WindowWidth = f"{center}", f"{width}"
    return image.to_bytes()


def spot_image(laterality: str, view: str, spot: tuple[float, float], *, photometric: str = "MONOCHROME2",
               index: int = 0, level: float = 0.45) -> bytes:
    """A 12-bit breast (half-ellipse against the chest wall, side by laterality) with one bright disk at `spot`
    (x, y stored pixels); MONOCHROME1 stores it inverted."""
    image = synth_image(STUDY_SEED, index=index, laterality=laterality, view=view, rows=ROWS, columns=COLUMNS,
                        photometric=photometric, study_seed=STUDY_SEED)
    yy, xx = np.mgrid[0:ROWS, 0:COLUMNS] + 0.5
    wall = COLUMNS - xx if laterality == "R" else xx
    breast = (wall / (0.85 * COLUMNS)) ** 2 + ((yy - ROWS / 2) / (0.42 * ROWS)) ** 2 < 1
    values = np.where(breast, level, 0.0)
    values[(xx - spot[0]) ** 2 + (yy - spot[1]) ** 2 < 9.0**2] = 0.95
    stored = np.rint(values * 4095)
    if photometric == "MONOCHROME1":
        stored = 4095 - stored
    return _with_pixels(image, stored)


def dark_image(index: int, laterality: str, view: str) -> bytes:
    """A non-diagnostic exposure: everything within 3% of black after windowing."""
    image = synth_image(STUDY_SEED, index=index, laterality=laterality, view=view, rows=ROWS, columns=COLUMNS,
                        study_seed=STUDY_SEED)
    return _with_pixels(image, np.full((ROWS, COLUMNS), 100))


def outputs_of(response) -> dict[str, np.ndarray]:
    return {output.name: output.as_numpy() for output in response.outputs}


@pytest.mark.parametrize(
    ("laterality", "photometric", "spot"),
    [("L", "MONOCHROME2", (120.5, 300.5)), ("R", "MONOCHROME2", (300.5, 150.5)), ("R", "MONOCHROME1", (250.5, 330.5))],
)
async def test_bright_spot_is_found_at_its_stored_pixels(mammography, dicom_request, laterality, photometric,
                                                         spot) -> None:
    blob = spot_image(laterality, "CC", spot, photometric=photometric)
    response, _ = await mammography(dicom_request([blob]))
    out = outputs_of(response)
    assert out["boxes"].dtype == np.float32 and out["boxes"].shape[1] == 4
    best = int(np.argmax(out["scores"]))
    x0, y0, x1, y1 = out["boxes"][best]
    # The stand-in's box is 12 model pixels wide around the peak; at ~0.55 model px per stored px, a peak one
    # model pixel off is ~2 stored pixels off.
    assert abs((x0 + x1) / 2 - spot[0]) <= 3.0 and abs((y0 + y1) / 2 - spot[1]) <= 3.0
    assert out["image_index"][best] == 0 and out["labels"][best] == "malignant_mass"
    assert out["quality"].shape == (1,) and out["quality"][0] > 0.5
    assert out["risk"].shape == (1,) and out["risk"][0] == pytest.approx(out["scores"].max(), rel=1e-5)
    images = json.loads(response.parameters["images"])
    assert images == [{"index": 0, "sop_instance_uid": images[0]["sop_instance_uid"], "laterality": laterality,
                       "view": "CC", "diagnostic": True, "voi": "window"}]


async def test_one_batched_predictor_call_with_the_metadata_input_size(mammography, dicom_request) -> None:
    blobs = [spot_image("L", "CC", (100, 200), index=0), spot_image("R", "CC", (300, 200), index=1),
             spot_image("L", "MLO", (100, 260), index=2)]
    await mammography(dicom_request(blobs))
    assert mammography.predictor.calls == [(3, 1, 288, 224)]


async def test_json_base64_request_gives_the_same_answer_as_binary(mammography, dicom_request) -> None:
    blobs = [spot_image("L", "CC", (140, 250), index=0), spot_image("R", "MLO", (290, 240), index=3)]
    binary, _ = await mammography(dicom_request(blobs))
    as_json, _ = await mammography(dicom_request(blobs, binary=False))
    for name, array in outputs_of(binary).items():
        np.testing.assert_array_equal(array, outputs_of(as_json)[name])


async def test_compressed_study_in_worker_processes_answers_like_the_uncompressed_one(
    mammography, dicom_request
) -> None:
    answers = []
    for syntax in ("explicit", "j2k", "jpegls"):
        study = synth_study(43, images=2, rows=384, columns=312, syntax=syntax, n_lesions=2, degraded=False)
        response, _ = await mammography(dicom_request([image.to_bytes() for image in study]))
        answers.append(outputs_of(response))
    assert mammography.pools._processes is not None  # the compressed views went to worker processes
    for answer in answers[1:]:
        for name, array in answers[0].items():
            np.testing.assert_array_equal(array, answer[name])


async def test_report_is_returned_raw_for_binary_and_base64_in_json(mammography, dicom_request) -> None:
    blob = spot_image("L", "CC", (140, 250))
    response, _ = await mammography(dicom_request([blob], parameters={"report": "sr"}))
    report = next(output for output in response.outputs if output.name == "report")
    assert report.shape == [1] and report.datatype == "BYTES"
    sr = hd.sr.srread(BytesIO(report.as_numpy()[0]))
    boxes = outputs_of(response)["boxes"]
    assert len(sr.content.get_planar_roi_measurement_groups()) == len(boxes) > 0

    response, _ = await mammography(dicom_request([blob], binary=False, parameters={"report": "sr"}))
    report = next(output for output in response.outputs if output.name == "report")
    assert report.parameters == {"content_encoding": "base64"}
    payload = report.as_numpy()[0]
    assert hd.sr.srread(BytesIO(base64.b64decode(payload))).SOPClassUID == sr.SOPClassUID


async def test_unknown_report_format_is_400(mammography, dicom_request) -> None:
    with pytest.raises(BadRequest, match="parameter 'report'"):
        await mammography(dicom_request([spot_image("L", "CC", (140, 250))], parameters={"report": "pdf"}))


async def test_non_diagnostic_image_is_flagged_and_excluded(mammography, dicom_request) -> None:
    blobs = [spot_image("L", "CC", (140, 250), index=0), dark_image(1, "R", "CC")]
    response, _ = await mammography(dicom_request(blobs))
    out = outputs_of(response)
    assert out["quality"][0] > 0.5 > out["quality"][1]
    assert set(out["image_index"].tolist()) == {0}
    assert [image["diagnostic"] for image in json.loads(response.parameters["images"])] == [True, False]


async def test_study_without_a_diagnostic_image_is_422(mammography, dicom_request) -> None:
    with pytest.raises(Unprocessable, match="no diagnostic image in the study"):
        await mammography(dicom_request([dark_image(0, "L", "CC"), dark_image(1, "R", "CC")]))


async def test_bad_image_is_rejected_with_its_index_before_decoding(mammography, dicom_request) -> None:
    good = spot_image("L", "CC", (140, 250))
    with pytest.raises(BadRequest, match="image 1: not a"):
        await mammography(dicom_request([good, b"\x00" * 2000]))
    assert mammography.predictor.calls == []


def _stage_count(stage: str) -> float:
    value = REGISTRY.get_sample_value("duet_stage_duration_seconds_count", {"model": "mammography", "stage": stage})
    return value or 0.0


async def test_stages_are_timed(mammography, dicom_request) -> None:
    before = {stage: _stage_count(stage) for stage in ("intake", "decode", "window", "resize", "predictor")}
    await mammography(dicom_request([spot_image("L", "CC", (140, 250), index=0),
                                     spot_image("R", "CC", (280, 250), index=1)]))
    assert _stage_count("intake") == before["intake"] + 1
    assert _stage_count("decode") == before["decode"] + 2
    assert _stage_count("window") == before["window"] + 2 and _stage_count("resize") == before["resize"] + 2
    assert _stage_count("predictor") == before["predictor"] + 1


async def test_patient_data_never_reaches_logs_or_warnings(mammography, dicom_request, caplog,
                                                          monkeypatch) -> None:
    caplog.set_level(logging.DEBUG)
    # An invalid value in the patient module: pydicom's reading validation would warn quoting it.
    monkeypatch.setattr(pydicom.config.settings, "writing_validation_mode", pydicom.config.WARN)
    image = synth_image(STUDY_SEED, rows=ROWS, columns=COLUMNS, study_seed=STUDY_SEED, degraded=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image.dataset.PatientBirthDate = image.patient.birth_date + "X"
        blob = image.to_bytes()
    secrets = [*image.patient.secrets, image.patient.birth_date + "X"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await mammography(dicom_request([blob]))
        with pytest.raises(Unprocessable, match="the DICOM SR cannot be built") as refused:
            await mammography(dicom_request([blob], parameters={"report": "sr"}))
        with pytest.raises(Unprocessable):
            await mammography(dicom_request([dark_image(0, "L", "CC")]))
        with pytest.raises(BadRequest):
            await mammography(dicom_request([blob, blob]))
    text = caplog.text + "\n".join(str(w.message) for w in caught) + str(refused.value)
    for secret in secrets:
        assert secret not in text


def test_start_spawns_the_decoder_processes_off_the_request_path(mammography) -> None:
    mammography.start()
    assert mammography.ready
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pool = mammography.pools._processes
        if pool is not None and len(pool._processes) == mammography.settings.dicom.decode_workers:
            break
        time.sleep(0.1)
    else:
        pytest.fail("decoder processes were not started")
    assert all(process.is_alive() for process in mammography.pools._processes._processes.values())
