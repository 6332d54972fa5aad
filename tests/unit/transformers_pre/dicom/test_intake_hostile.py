"""Intake checks added for hostile files: executable preambles, windows that cannot apply, multi-frame images.

Each is refused at the header, before any pixel is decoded, with the status and an error naming the image.
"""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread

from duet.synthetic_dicom import SynthImage, synth_image
from transformers_pre.dicom.intake import read_header
from transformers_pre.errors import BadRequest, DuetError, Unprocessable
from transformers_pre.settings import DicomSettings


@pytest.fixture(scope="module")
def image() -> SynthImage:
    return synth_image(31, rows=64, columns=52, degraded=False)


def _rewritten(image: SynthImage, edit) -> bytes:
    ds = dcmread(BytesIO(image.to_bytes()))
    edit(ds)
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _refused(blob: bytes, error: type[DuetError], match: str) -> None:
    with pytest.raises(error, match=match) as caught:
        read_header(blob, 3, DicomSettings())
    assert caught.value.image_index == 3 and str(caught.value).startswith("image 3: ")


@pytest.mark.parametrize("magic", [b"MZ\x90\x00", b"\x7fELF", b"\xcf\xfa\xed\xfe", b"#!/bin/sh\n"])
def test_an_executable_preamble_is_refused(image: SynthImage, magic: bytes) -> None:
    blob = image.to_bytes()
    _refused(magic + blob[len(magic):], BadRequest, "preamble holds an executable header")


def test_a_preamble_of_other_bytes_is_fine(image: SynthImage) -> None:
    blob = image.to_bytes()
    # A TIFF header is a known, legitimate use of the preamble (dual-format files).
    header = read_header(b"II*\x00" + blob[4:], 0, DicomSettings())
    assert header.rows == 64


def test_a_window_width_of_zero_is_unprocessable(image: SynthImage) -> None:
    def zero_width(ds) -> None:
        ds.WindowWidth = 0

    _refused(_rewritten(image, zero_width), Unprocessable, "Window Width 0 is not valid for VOI LUT Function LINEAR")


def test_linear_exact_allows_a_width_below_one_but_not_zero(image: SynthImage) -> None:
    def exact(width: float):
        def edit(ds) -> None:
            ds.VOILUTFunction, ds.WindowWidth = "LINEAR_EXACT", width
        return edit

    assert read_header(_rewritten(image, exact(0.5)), 0, DicomSettings()).rows == 64
    _refused(_rewritten(image, exact(0)), Unprocessable, "must be above 0")


def test_a_window_that_is_not_numbers_is_a_400(image: SynthImage) -> None:
    def text_window(ds) -> None:
        ds.add_new(0x00281050, "LO", "abc")
        ds.add_new(0x00281051, "LO", "wide")

    _refused(_rewritten(image, text_window), BadRequest, "are not numbers")


def test_a_window_ignored_for_a_voi_lut_sequence_is_not_checked(image: SynthImage) -> None:
    with_lut = synth_image(32, rows=64, columns=52, voi="voi_lut", degraded=False)

    def zero_width(ds) -> None:
        ds.WindowCenter, ds.WindowWidth = 100, 0

    assert read_header(_rewritten(with_lut, zero_width), 0, DicomSettings()).rows == 64


def test_a_voi_lut_of_unsupported_bits_or_short_data_is_refused() -> None:
    with_lut = synth_image(33, rows=64, columns=52, voi="voi_lut", degraded=False)

    def bits(ds) -> None:
        ds.VOILUTSequence[0].LUTDescriptor = [0, 0, 99]

    def short(ds) -> None:
        item = ds.VOILUTSequence[0]
        item.LUTDescriptor = [4096, 0, 16]
        item.LUTData = bytes(200)  # 100 16-bit entries

    def two_values(ds) -> None:
        ds.VOILUTSequence[0].LUTDescriptor = [4096, 0]

    _refused(_rewritten(with_lut, bits), Unprocessable, "99 bits per entry")
    _refused(_rewritten(with_lut, short), BadRequest, "holds 100 entries; its descriptor declares 4096")
    _refused(_rewritten(with_lut, two_values), BadRequest, "Descriptor has 2 values")
    assert read_header(with_lut.to_bytes(), 0, DicomSettings()).rows == 64


@pytest.mark.parametrize("element", [b"\x02\x00\x10\x00UI", b"\x08\x00\x16\x00UI"],
                         ids=["TransferSyntaxUID", "SOPClassUID"])
def test_a_needed_element_with_an_unknown_vr_is_a_400(image: SynthImage, element: bytes) -> None:
    # Found by the fuzz target: pydicom raises NotImplementedError on first access (KServe would answer 501).
    blob = image.to_bytes()
    assert element in blob
    with pytest.raises(BadRequest) as caught:
        read_header(blob.replace(element, element[:4] + b"YU", 1), 2, DicomSettings())
    assert caught.value.image_index == 2


def test_an_unknown_vr_in_an_element_nobody_reads_is_tolerated(image: SynthImage) -> None:
    element = b"\x02\x00\x12\x00UI"  # Implementation Class UID
    blob = image.to_bytes()
    assert element in blob
    assert read_header(blob.replace(element, element[:4] + b"YU", 1), 0, DicomSettings()).rows == 64
