"""One view's pixel pipeline: orientation hints, the in-place and reduced paths against pydicom's picture, and
files read in place from the request."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset

from duet.synthetic_dicom import synth_image
from transformers_pre.dicom.decode import decode_pixels
from transformers_pre.dicom.geometry import plan_view, preview_step, render
from transformers_pre.dicom.pixels import chest_wall_hint, prepare_pixels
from transformers_pre.dicom.study import read_study
from transformers_pre.dicom.window import apply_table, build_table, stored_range, voi_kind
from transformers_pre.settings import DicomSettings


def _ds(**attributes: object) -> Dataset:
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def test_chest_wall_hint_from_patient_orientation_then_laterality() -> None:
    assert chest_wall_hint(_ds(PatientOrientation=["P", "L"]), "L") is True
    assert chest_wall_hint(_ds(PatientOrientation=["A", "FR"]), "R") is False
    assert chest_wall_hint(_ds(), "R") is True
    assert chest_wall_hint(_ds(), "U") is None


@pytest.mark.parametrize(("voi", "bits", "photometric"), [("window", 12, "MONOCHROME2"), ("none", 14, "MONOCHROME1"),
                                                         ("voi_lut", 16, "MONOCHROME2")])
def test_native_pixels_read_in_place_give_the_pydicom_path_s_picture(voi: str, bits: int, photometric: str) -> None:
    image = synth_image(61, rows=2048, columns=1664, bits=bits, voi=voi, photometric=photometric, n_lesions=2,
                        degraded=False)
    blob = image.to_bytes()
    (study,) = read_study([blob], DicomSettings())
    in_place = prepare_pixels(blob, study.header, study.laterality, (256, 208), resolution_aware=False)
    # The reference: pydicom decodes (a copy), the same crop-before-window code renders it.
    decoded = decode_pixels(blob, study.header.transfer_syntax, 0)
    kind = voi_kind(study.header.dataset)
    window = build_table(study.header.dataset, stored_range=stored_range(decoded) if kind == "fallback" else None)
    step = preview_step(decoded.shape)
    transform = plan_view(apply_table(decoded[::step, ::step], window), step, decoded.shape, (256, 208),
                          chest_wall_hint(study.header.dataset, study.laterality))
    x0, y0, x1, y1 = transform.crop
    reference = render(apply_table(decoded[y0:y1, x0:x1], window), transform, (256, 208))
    assert in_place.transform == transform
    np.testing.assert_array_equal(in_place.pixels, reference)
    # The default path averages 2^r blocks of stored values first: the same picture up to edge rounding.
    reduced = prepare_pixels(blob, study.header, study.laterality, (256, 208))
    assert reduced.transform.grid_step == 4 and reduced.transform.resized == transform.resized
    difference = np.abs(reduced.pixels - reference) * 255
    assert np.percentile(difference, 99) <= 4 and difference.mean() < 1.0
    np.testing.assert_allclose(reduced.transform.to_model(image.boxes), transform.to_model(image.boxes), atol=1.0)


def test_bits_above_bits_stored_are_ignored_as_pydicom_ignores_them() -> None:
    image = synth_image(62, rows=1024, columns=832, bits=12, n_lesions=1, degraded=False)
    clean = image.to_bytes()
    stored = image.dataset.pixel_array.copy()
    image.dataset.PixelData = (stored | 0xA000).astype("<u2").tobytes()  # garbage in the 4 unused high bits
    dirty = image.to_bytes()
    pictures = []
    for blob in (clean, dirty):
        (study,) = read_study([blob], DicomSettings())
        pictures += [prepare_pixels(blob, study.header, study.laterality, (128, 104), resolution_aware=aware).pixels
                     for aware in (True, False)]
    # Clean file: block means on the default path. With high bits set the block means would be wrong, so that
    # file's default path windows the full-resolution crop, exactly as the full-resolution path does.
    clean_default, clean_full, dirty_default, dirty_full = pictures
    assert not np.array_equal(clean_default, clean_full)
    np.testing.assert_array_equal(dirty_default, clean_full)
    np.testing.assert_array_equal(dirty_full, clean_full)


@pytest.mark.parametrize("syntax", ["explicit", "rle", "jpegls", "j2k"])
def test_a_file_read_in_place_from_the_request_prepares_exactly_like_its_bytes(syntax: str) -> None:
    """Files arrive as read-only views of the request body (`codecs.split_bytes_tensor`); every path reads
    them in place and gives the same header and model input as from a `bytes` copy."""
    blob = synth_image(31, rows=512, columns=416, bits=12, syntax=syntax, n_lesions=1, degraded=False).to_bytes()
    view = memoryview(bytearray(b"\0" * 7 + blob))[7:].toreadonly()  # inside a larger buffer, as in a request
    from_bytes, from_view = read_study([blob], DicomSettings())[0], read_study([view], DicomSettings())[0]
    assert from_view.header.rows == from_bytes.header.rows == 512
    assert from_view.header.transfer_syntax == from_bytes.header.transfer_syntax
    expected = prepare_pixels(blob, from_bytes.header, from_bytes.laterality, (128, 104))
    actual = prepare_pixels(view, from_view.header, from_view.laterality, (128, 104))
    np.testing.assert_array_equal(actual.pixels, expected.pixels)
    assert actual.transform == expected.transform


@pytest.mark.parametrize("syntax", ["explicit", "j2k", "jpeg"])
def test_nothing_prepared_from_a_request_keeps_its_buffer(syntax: str) -> None:
    """Header datasets and model inputs outlive the reading of a file; none of them may hold the request's
    buffer, or `body.ReceiveBuffers` could not reuse it (pydicom keeps its reader on the dataset)."""
    import sys

    blob = synth_image(32, rows=512, columns=416, syntax=syntax, n_lesions=1, degraded=False).to_bytes()
    buffer = bytearray(blob)
    unreferenced = sys.getrefcount(buffer)
    view = memoryview(buffer).toreadonly()
    study = read_study([view], DicomSettings())[0]
    prepared = prepare_pixels(view, study.header, study.laterality, (128, 104))
    del view
    assert sys.getrefcount(buffer) == unreferenced
    assert study.header.dataset.Rows == 512 and prepared.pixels.shape == (128, 104)
