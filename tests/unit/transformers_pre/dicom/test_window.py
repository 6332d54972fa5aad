"""The folded LUT against pydicom's own apply_modality_lut + apply_voi_lut (+ inversion), pixel by pixel."""

from __future__ import annotations

import itertools
from io import BytesIO

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut
from pydicom.sequence import Sequence

from duet.synthetic_dicom import BITS, PHOTOMETRICS, VOIS, synth_image
from transformers_pre.dicom.decode import decode_pixels
from transformers_pre.dicom.intake import read_header
from transformers_pre.dicom.window import apply_table, build_table, stored_range, voi_kind
from transformers_pre.errors import Unprocessable
from transformers_pre.settings import DicomSettings

SIZE = {"rows": 96, "columns": 80}
TOLERANCE = 1.0 / 255.0


def _to_bytes(ds: Dataset) -> bytes:
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def reference_display(ds: Dataset) -> np.ndarray:
    """The float reference in [0, 1]: pydicom's LUT functions on the decoded pixels, normalised as documented."""
    pixels = ds.pixel_array
    modality = apply_modality_lut(pixels, ds)
    sequence = ds.get("VOILUTSequence")
    if sequence:
        output = apply_voi_lut(modality, ds).astype(np.float64)
        item = sequence[0]
        entries = int(item.LUTDescriptor[0]) or 65536
        data = item.LUTData
        lut = np.frombuffer(data, "<u2")[:entries] if isinstance(data, bytes) else np.asarray(data)
        low, high = float(lut.min()), float(lut.max())
    elif "WindowCenter" in ds:
        output = apply_voi_lut(modality, ds).astype(np.float64)
        bits = int(ds.BitsStored)
        if ds.get("ModalityLUTSequence"):
            low, high = 0.0, 2.0 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1
        elif int(ds.PixelRepresentation) == 1:
            low, high = -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
        else:
            low, high = 0.0, 2.0**bits - 1
        if "RescaleSlope" in ds and "RescaleIntercept" in ds:
            low, high = (v * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for v in (low, high))
            low, high = min(low, high), max(low, high)
    else:
        output = np.asarray(modality, dtype=np.float64)
        low, high = float(output.min()), float(output.max())
    display = np.clip((output - low) / (high - low), 0.0, 1.0)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        display = 1.0 - display
    return display


def ours(blob: bytes) -> np.ndarray:
    """The transformer's path: header-only intake, decode, one table built from the header, one gather."""
    header = read_header(blob, 0, DicomSettings())
    stored = decode_pixels(blob, header.transfer_syntax, 0, forced=header.forced)
    table = build_table(header.dataset, stored_range=stored_range(stored))
    return apply_table(stored, table).astype(np.float64) / 255.0


def assert_matches_reference(blob: bytes) -> None:
    expected = reference_display(dcmread(BytesIO(blob)))
    got = ours(blob)
    assert got.shape == expected.shape
    error = np.abs(got - expected).max()
    assert error <= TOLERANCE, f"max |ours - pydicom| = {error * 255:.3f}/255"
    # The comparison must see a real image, not a constant one.
    assert expected.std() > 0.05


@pytest.mark.parametrize(("bits", "photometric", "voi"), list(itertools.product(BITS, PHOTOMETRICS, VOIS)))
def test_every_synthesised_variant_matches_pydicom(bits: int, photometric: str, voi: str) -> None:
    image = synth_image(11, bits=bits, photometric=photometric, voi=voi, degraded=False, **SIZE)
    assert_matches_reference(image.to_bytes())


@pytest.mark.parametrize("syntax", ["rle", "jpegls", "j2k"])
def test_compressed_files_match_pydicom(syntax: str) -> None:
    image = synth_image(12, bits=14, photometric="MONOCHROME1", voi="multi_window", syntax=syntax, degraded=False,
                        **SIZE)
    assert_matches_reference(image.to_bytes())


def _base(**options: object) -> Dataset:
    return synth_image(13, degraded=False, **{**SIZE, **options}).dataset  # type: ignore[arg-type]


def test_rescale_slope_and_intercept() -> None:
    ds = _base(voi="window", bits=12)
    ds.RescaleSlope, ds.RescaleIntercept = "2.5", "-1000"
    ds.WindowCenter, ds.WindowWidth = "4000", "9000"
    assert_matches_reference(_to_bytes(ds))


def test_negative_rescale_slope_window() -> None:
    ds = _base(voi="window", bits=12, photometric="MONOCHROME1")
    ds.RescaleSlope, ds.RescaleIntercept = "-1", "4095"
    assert_matches_reference(_to_bytes(ds))


def test_signed_pixels_with_window_and_fallback() -> None:
    ds = _base(voi="window", bits=16)
    pixels = ds.pixel_array.astype(np.int32) - 32768
    ds.PixelRepresentation = 1
    ds.PixelData = pixels.astype("<i2").tobytes()
    ds.WindowCenter, ds.WindowWidth = "-2000", "50000"
    assert_matches_reference(_to_bytes(ds))
    del ds.WindowCenter, ds.WindowWidth
    assert_matches_reference(_to_bytes(ds))


def test_modality_lut_sequence() -> None:
    ds = _base(voi="window", bits=12)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.ModalityLUTType = "US"
    # LUT Data as US (a list of values); the VOI test below uses the OW form.
    item.add_new(0x00283006, "US", np.rint(np.sqrt(np.arange(4096) / 4095) * 65535).astype(int).tolist())
    ds.ModalityLUTSequence = Sequence([item])
    ds.WindowCenter, ds.WindowWidth = "30000", "60000"
    assert_matches_reference(_to_bytes(ds))


def test_voi_lut_with_first_mapped_value_and_clipping() -> None:
    ds = _base(voi="voi_lut", bits=12)
    item = ds.VOILUTSequence[0]
    # 2048 entries starting at stored value 1024: values below use entry 0, values above the last entry.
    item.LUTDescriptor = [2048, 1024, 12]
    item.LUTData = np.linspace(100, 4000, 2048).astype("<u2").tobytes()
    assert_matches_reference(_to_bytes(ds))


def test_voi_lut_sequence_is_preferred_over_window() -> None:
    ds = _base(voi="voi_lut", bits=12)
    ds.WindowCenter, ds.WindowWidth = "100", "10"  # would saturate almost everything if used
    blob = _to_bytes(ds)
    header = read_header(blob, 0, DicomSettings())
    assert voi_kind(header.dataset) == "voi_lut"
    assert_matches_reference(blob)


def test_eight_bit_pixels() -> None:
    ds = _base(voi="none", bits=12)
    pixels = (ds.pixel_array >> 4).astype(np.uint8)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OB"
    assert_matches_reference(_to_bytes(ds))


def test_monochrome1_is_inverted_after_voi() -> None:
    """The same phantom stored as MONOCHROME1 and MONOCHROME2 looks the same once windowed (air dark)."""
    m2 = ours(synth_image(14, photometric="MONOCHROME2", voi="sigmoid", degraded=False, **SIZE).to_bytes())
    m1 = ours(synth_image(14, photometric="MONOCHROME1", voi="sigmoid", degraded=False, **SIZE).to_bytes())
    assert np.abs(m1 - m2).max() <= 2.0 / 255.0
    # Air (the right-hand corners, away from the breast) is dark in both.
    assert m1[:5, -5:].mean() < 0.1 and m2[:5, -5:].mean() < 0.1


def test_fallback_window_spans_the_image_range() -> None:
    blob = synth_image(15, voi="none", degraded=False, **SIZE).to_bytes()
    display = ours(blob)
    assert display.min() == 0.0 and display.max() == 1.0


def test_invalid_window_width_is_422() -> None:
    ds = _base(voi="window")
    ds.WindowWidth = "0"
    # The intake refuses it before any pixel work; the table builder refuses it on its own too.
    with pytest.raises(Unprocessable, match="image 0: Window Width 0"):
        read_header(_to_bytes(ds), 0, DicomSettings())
    with pytest.raises(Unprocessable, match="Window Width"):
        build_table(ds)
