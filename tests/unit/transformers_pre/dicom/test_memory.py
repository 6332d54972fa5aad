"""A study's memory is estimated from its headers before decoding: 413 past the per-study cap (naming the image),
429 with Retry-After when the studies being prepared in the process would pass theirs together."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from duet.synthetic_dicom import synth_image, synth_study
from transformers_pre.dicom.memory import MIB, MemoryBudget, preparation_bytes, study_preparation_bytes
from transformers_pre.dicom.study import read_study
from transformers_pre.errors import Overloaded, PayloadTooLarge
from transformers_pre.settings import DicomSettings, Settings

ROWS, COLUMNS = 1024, 832
FRAME = ROWS * COLUMNS * 2


def _image(syntax: str):
    blob = synth_image(5, rows=ROWS, columns=COLUMNS, bits=12, syntax=syntax, n_lesions=0, degraded=False).to_bytes()
    return blob, read_study([blob], DicomSettings())[0]


def test_the_estimate_follows_the_decoding_path() -> None:
    explicit_blob, explicit = _image("explicit")
    j2k_blob, j2k = _image("j2k")
    jpegls_blob, jpegls = _image("jpegls")
    assert preparation_bytes(explicit, len(explicit_blob), True) == FRAME // 2  # read in place
    assert preparation_bytes(j2k, len(j2k_blob), True) == len(j2k_blob) + FRAME // 2  # reduced resolution
    assert preparation_bytes(j2k, len(j2k_blob), False) == len(j2k_blob) + 3 * FRAME  # full decode
    assert preparation_bytes(jpegls, len(jpegls_blob), True) == len(jpegls_blob) + 3 * FRAME


def test_a_study_past_the_cap_is_413_naming_the_image_that_passes_it() -> None:
    blobs = [image.to_bytes() for image in synth_study(9, images=3, rows=ROWS, columns=COLUMNS, syntax="jpegls",
                                                        degraded=False)]
    images = read_study(blobs, DicomSettings())
    one = preparation_bytes(images[0], len(blobs[0]), True)
    assert study_preparation_bytes(blobs, images, True, limit=3 * one + MIB) >= 2 * one
    with pytest.raises(PayloadTooLarge, match=r"^image 1: preparing this study needs about \d+ MiB by this image "
                       r"\(\d+ MiB for its 1024 x 832 16-bit frame\); the limit per study is \d+ MiB"):
        study_preparation_bytes(blobs, images, True, limit=one + one // 2)


def test_the_process_budget_refuses_with_429_while_full_and_frees_on_failure() -> None:
    budget = MemoryBudget(limit=100 * MIB, model="mammography-test")
    with budget.reserve(60 * MIB):
        refused = "studies that hold 60 MiB of its 100 MiB; this one needs 50 MiB: retry later"
        with pytest.raises(Overloaded, match=refused), budget.reserve(50 * MIB):
            pass
        with budget.reserve(40 * MIB):
            assert budget.reserved == 100 * MIB
    with pytest.raises(RuntimeError), budget.reserve(70 * MIB):
        raise RuntimeError("decoding failed")
    assert budget.reserved == 0
    with budget.reserve(500 * MIB):  # alone, a study within the per-study cap is always admitted
        assert budget.reserved == 500 * MIB


async def test_the_model_refuses_a_study_over_its_cap_before_decoding(standin_repository: Path,
                                                                      dicom_request) -> None:
    from tests.unit.transformers_pre.dicom.conftest import InProcessOnnxPredictor
    from transformers_pre.dicom.model import MammographyModel

    settings = Settings(model_repository=standin_repository,
                        dicom=DicomSettings(max_study_memory_bytes=FRAME))
    predictor = InProcessOnnxPredictor(standin_repository / "mammo_detector" / "1" / "model.onnx")
    model = MammographyModel(settings, predictor)  # type: ignore[arg-type]
    model.load()
    try:
        blobs = [image.to_bytes() for image in synth_study(11, images=2, rows=ROWS, columns=COLUMNS, syntax="rle",
                                                            degraded=False)]
        with pytest.raises(PayloadTooLarge, match="image 0: preparing this study needs"):
            await model(dicom_request(blobs))
        assert model.memory.reserved == 0
        small = [image.to_bytes() for image in synth_study(11, images=2, rows=256, columns=208, degraded=False)]
        response, _ = await asyncio.wait_for(model(dicom_request(small)), 60)
        assert response.outputs and model.memory.reserved == 0
    finally:
        model.pools.shutdown()
