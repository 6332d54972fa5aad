"""JPEG Baseline: the frame header checked before decoding, and the DCT-scaled decode mapped back exactly."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.encaps import encapsulate, generate_frames

from duet.synthetic_dicom import synth_image
from transformers_pre.dicom.jpeg import check_jpeg, decode_scaled
from transformers_pre.dicom.pixels import prepare_pixels
from transformers_pre.dicom.pools import DecodePools
from transformers_pre.dicom.study import read_study
from transformers_pre.errors import BadRequest, PayloadTooLarge
from transformers_pre.settings import DicomSettings


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


@pytest.mark.parametrize(("rows", "columns"), [(1024, 832), (1001, 803), (77, 61)])
@pytest.mark.parametrize("reduction", [1, 2, 3])
def test_the_scaled_decode_has_ceil_size_over_scale_samples_each_a_block_mean(rows: int, columns: int,
                                                                              reduction: int) -> None:
    rng = np.random.default_rng(rows + reduction)
    # Smooth content (a DCT-scaled sample is its block's low frequencies), 8-bit.
    coarse = rng.uniform(40, 215, (rows // 16 + 2, columns // 16 + 2)).astype(np.float32)
    pixels = np.clip(np.rint(np.kron(coarse, np.ones((16, 16)))[:rows, :columns]), 0, 255).astype(np.uint8)
    scaled = decode_scaled(_jpeg(pixels), reduction, rows, columns, 0)
    step = 1 << reduction
    assert scaled.shape == (-(-rows // step), -(-columns // step)) and scaled.dtype == np.uint8
    full_blocks = pixels[: rows // step * step, : columns // step * step].astype(np.float32)
    means = full_blocks.reshape(rows // step, step, columns // step, step).mean(axis=(1, 3))
    difference = np.abs(scaled[: rows // step, : columns // step] - means)
    assert np.median(difference) <= 2.0


def test_scaled_and_full_paths_agree_and_boxes_map_back_to_the_same_stored_pixels(both_paths) -> None:
    image, study, scaled, full = both_paths("jpeg")
    assert scaled.transform.grid_step == 4 and full.transform.grid_step == 1
    difference = np.abs(scaled.pixels - full.pixels) * 255
    assert np.percentile(difference, 99) < 30 and difference.mean() < 6
    np.testing.assert_allclose(scaled.transform.to_model(image.boxes), full.transform.to_model(image.boxes),
                               atol=1.0)
    assert not DecodePools(DicomSettings()).uses_process(study.header)  # scaled JPEG stays on threads


def test_a_jpeg_stream_that_disagrees_with_the_header_or_is_too_large_is_refused_before_decoding() -> None:
    frame = _jpeg(np.full((64, 48), 100, np.uint8))
    with pytest.raises(BadRequest, match=r"64 x 48 pixels \(the header says 64 x 50\)"):
        check_jpeg(frame, 64, 50, 8, 0)
    with pytest.raises(BadRequest, match=r"8-bit samples \(BitsStored is 12\)"):
        check_jpeg(frame, 64, 48, 12, 0)
    with pytest.raises(PayloadTooLarge, match="more than the 3072 bytes of the raw 64 x 48 frame"):
        check_jpeg(frame + b"\0" * 4000, 64, 48, 8, 0)
    with pytest.raises(BadRequest, match="the JPEG stream cannot be read"):
        check_jpeg(b"\xff\xd8" + bytes(200), 64, 48, 8, 0)


def test_a_truncated_jpeg_in_a_study_is_a_400_naming_the_image() -> None:
    blob = synth_image(9, rows=512, columns=416, syntax="jpeg", n_lesions=0, degraded=False).to_bytes()
    ds = dcmread(BytesIO(blob))
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame[: len(frame) // 3]])
    truncated = BytesIO()
    ds.save_as(truncated)
    study = read_study([truncated.getvalue()], DicomSettings())[0]
    with pytest.raises(BadRequest, match="image 0: .*JPEG"):
        prepare_pixels(truncated.getvalue(), study.header, study.laterality, (128, 104))
