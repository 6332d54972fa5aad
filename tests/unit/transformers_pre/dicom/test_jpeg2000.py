"""Resolution-aware JPEG 2000 decoding: the main header reader, the ceiling rule and sample positions against real
codestreams (encoded by pylibjpeg-openjpeg, decoded by Pillow), the checks before decoding, and the study path."""

from __future__ import annotations

import asyncio
from io import BytesIO

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import JPEG2000Lossless

from duet.synthetic_dicom import synth_image
from transformers_pre.dicom.decode import check_codestream, encapsulated_frame, locate_pixel_data
from transformers_pre.dicom.jpeg2000 import decode_reduced, read_codestream
from transformers_pre.dicom.pixels import prepare_pixels
from transformers_pre.dicom.pools import DecodePools
from transformers_pre.dicom.preparation import prepare_study
from transformers_pre.dicom.study import read_study
from transformers_pre.errors import BadRequest, PayloadTooLarge
from transformers_pre.settings import DicomSettings


def _j2k_file(pixels: np.ndarray, *, bits: int, signed: bool = False, seed: int = 1) -> bytes:
    """A real MG file (synthetic_dicom's header) whose pixels are `pixels`, JPEG 2000 Lossless encoded."""
    image = synth_image(seed, rows=pixels.shape[0], columns=pixels.shape[1], degraded=False)
    ds = image.dataset
    allocated = pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = allocated, bits, bits - 1
    ds.PixelRepresentation = int(signed)
    ds.WindowCenter, ds.WindowWidth = (0, 2**bits) if signed else (2 ** (bits - 1), 2**bits)
    ds.compress(JPEG2000Lossless, np.ascontiguousarray(pixels), encoding_plugin="pylibjpeg",
                generate_instance_uid=False)
    return image.to_bytes()


def _frame(blob: bytes) -> bytes:
    element = locate_pixel_data(blob, JPEG2000Lossless, 0)
    return encapsulated_frame(blob, element, 0)


def _header(blob: bytes):
    return read_study([blob], DicomSettings())[0]


@pytest.mark.parametrize("shape", [(517, 389), (512, 416), (301, 255)])
def test_reduced_sizes_follow_the_ceiling_rule_and_values_stay_stored_values(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 4096, shape).astype(np.uint16)
    blob = _j2k_file(pixels, bits=12)
    frame = _frame(blob)
    codestream = read_codestream(frame, 0)
    assert (codestream.rows, codestream.columns, codestream.precision, codestream.signed) == (*shape, 12, False)
    assert codestream.components == 1 and codestream.levels >= 3 and not codestream.high_throughput
    full = decode_reduced(frame, codestream, 0, np.dtype("uint16"), 0)
    np.testing.assert_array_equal(full, dcmread(BytesIO(blob)).pixel_array)
    for reduction in range(1, codestream.levels + 1):
        reduced = decode_reduced(frame, codestream, reduction, np.dtype("uint16"), 0)
        step = 2**reduction
        assert reduced.shape == (-(-shape[0] // step), -(-shape[1] // step)) == codestream.reduced_shape(reduction)
        assert reduced.dtype == np.uint16 and int(reduced.max()) < 4096


@pytest.mark.parametrize(("dtype", "bits", "signed"), [("int16", 12, True), ("uint8", 8, False), ("int16", 16, True)])
def test_signed_and_8_bit_samples_come_back_as_stored_values(dtype: str, bits: int, signed: bool) -> None:
    rng = np.random.default_rng(4)
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1)) if signed else (0, 2**bits)
    pixels = rng.integers(low, high, (96, 80)).astype(dtype)
    blob = _j2k_file(pixels, bits=bits, signed=signed)
    frame = _frame(blob)
    codestream = read_codestream(frame, 0)
    assert codestream.signed is signed and codestream.precision == bits
    np.testing.assert_array_equal(decode_reduced(frame, codestream, 0, np.dtype(dtype), 0), pixels)
    smooth = np.tile(np.linspace(low / 2, high / 2, 80).astype(dtype), (96, 1))
    smooth_frame = _frame(_j2k_file(smooth, bits=bits, signed=signed))
    reduced = decode_reduced(smooth_frame, read_codestream(smooth_frame, 0), 2, np.dtype(dtype), 0)
    # A smooth ramp survives 4x reduction: each sample is near the stored value at its position (4u).
    np.testing.assert_allclose(reduced[5].astype(float), smooth[5, ::4].astype(float), atol=(high - low) / 60)


def test_a_bright_square_lands_where_the_reduced_grid_says() -> None:
    pixels = np.full((1024, 832), 300, np.uint16)
    pixels[400:464, 296:360] = 3800  # stored x in [296, 360), y in [400, 464)
    blob = _j2k_file(pixels, bits=12)
    frame = _frame(blob)
    codestream = read_codestream(frame, 0)
    for reduction in (2, 3):
        grid = codestream.grid(reduction)
        reduced = decode_reduced(frame, codestream, reduction, np.dtype("uint16"), 0).astype(float)
        # Centre of mass of the square in decoded pixels (continuous, pixel u covering [u, u+1)), mapped to stored.
        weights = reduced - 300
        ys, xs = np.mgrid[0 : reduced.shape[0], 0 : reduced.shape[1]]
        cx, cy = (weights * (xs + 0.5)).sum() / weights.sum(), (weights * (ys + 0.5)).sum() / weights.sum()
        ox, oy = grid.offset
        assert grid.step * cx + ox == pytest.approx(328.0, abs=0.5)
        assert grid.step * cy + oy == pytest.approx(432.0, abs=0.5)
        # Reading decoded pixel u as the block [step * u, step * (u + 1)) would be (step - 1) / 2 pixels off.
        assert abs(grid.step * cx + grid.origin[0] - 328.0) > (grid.step - 1) / 2 - 0.5


def test_a_codestream_larger_than_the_raw_frame_is_refused_before_decoding() -> None:
    rng = np.random.default_rng(5)
    blob = _j2k_file(rng.integers(0, 4096, (64, 48)).astype(np.uint16), bits=12)
    ds = dcmread(BytesIO(blob))
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame + b"\0" * (64 * 48 * 2)])
    padded = BytesIO()
    ds.save_as(padded)
    image = _header(padded.getvalue())
    with pytest.raises(PayloadTooLarge, match="image 0: the JPEG 2000 codestream has .* more than the 6144 bytes"):
        prepare_pixels(padded.getvalue(), image.header, image.laterality, (32, 24))


def test_a_codestream_that_disagrees_with_the_header_is_refused() -> None:
    pixels = np.random.default_rng(6).integers(0, 4096, (64, 48)).astype(np.uint16)
    frame = _frame(_j2k_file(pixels, bits=12))
    with pytest.raises(BadRequest, match="64 x 48 pixels \\(the header says 64 x 50\\)"):
        check_codestream(frame, 64, 50, 16, 12, False, 0)
    with pytest.raises(BadRequest, match="12-bit samples \\(BitsStored is 14\\)"):
        check_codestream(frame, 64, 48, 16, 14, False, 0)
    with pytest.raises(BadRequest, match="unsigned samples \\(PixelRepresentation is 1\\)"):
        check_codestream(frame, 64, 48, 16, 12, True, 0)
    with pytest.raises(BadRequest, match="main header is invalid"):
        read_codestream(b"\xff\x4f\xff\x51\x00\x29" + b"\0" * 20, 0)


def test_reduced_and_full_paths_agree_and_the_full_path_is_a_setting(both_paths) -> None:
    image, _, reduced, full = both_paths("j2k")
    assert reduced.transform.grid_step == 4 and full.transform.grid_step == 1
    # Crops found on the 256 x 208 decode and on the strided full image may differ by a reduced pixel, and the
    # fitted size by one model pixel, so pictures are compared loosely (the phantoms' fine texture and noise are
    # where the wavelet low-pass and a box average differ most); benchmarks/fidelity_j2k.py measures them, and the
    # held-out evaluation compares the detector's metrics on both paths (evaluation/).
    difference = np.abs(reduced.pixels - full.pixels) * 255
    assert np.percentile(difference, 99) < 24 and difference.mean() < 6
    # The same lesion boxes in stored pixels map to nearly the same model pixels on both paths.
    np.testing.assert_allclose(reduced.transform.to_model(image.boxes), full.transform.to_model(image.boxes),
                               atol=1.0)


def test_reduced_jpeg2000_stays_on_threads_and_matches_a_serial_run() -> None:
    blobs = [synth_image(9, index=index, laterality=side, rows=512, columns=416, syntax="j2k", degraded=False,
                         study_seed=9).to_bytes() for index, side in enumerate("LR")]
    images = read_study(blobs, DicomSettings())
    pools = DecodePools(DicomSettings(decode_workers=2))
    assert not pools.uses_process(images[0].header)
    assert DecodePools(DicomSettings(resolution_aware=False)).uses_process(images[0].header)
    try:
        prepared = asyncio.run(prepare_study(blobs, images, (128, 104), pools, "mammography"))
    finally:
        pools.shutdown()
    for image, item in zip(images, prepared):
        serial = prepare_pixels(blobs[image.index], image.header, image.laterality, (128, 104))
        np.testing.assert_array_equal(item.pixels, serial.pixels)
        assert item.transform == serial.transform and item.transform.grid_step == 2
