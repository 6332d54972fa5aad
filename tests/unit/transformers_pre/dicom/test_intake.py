"""Header-only validation: every rejection, one by one, with its status, the image index and no patient data."""

from __future__ import annotations

import tracemalloc
from io import BytesIO

import numpy as np
import pytest
from dicom_edits import dicom_bytes, edited
from pydicom import dcmread
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGExtended12Bit

from duet.synthetic_dicom import SynthImage, synth_image, synth_study
from transformers_pre.dicom.decode import decode_pixels
from transformers_pre.dicom.intake import read_header
from transformers_pre.dicom.study import read_study
from transformers_pre.errors import BadRequest, DuetError, PayloadTooLarge, Unprocessable
from transformers_pre.settings import DicomSettings

SIZE = {"rows": 128, "columns": 104}


@pytest.fixture(scope="module")
def good() -> SynthImage:
    return synth_image(21, degraded=False, **SIZE)


def reject(good: SynthImage, bad: bytes, error: type[DuetError], match: str,
           settings: DicomSettings | None = None) -> DuetError:
    """Send [good, bad]: the error must be `error`, name image 1 and the problem, and hold no patient data."""
    with pytest.raises(error, match=match) as caught:
        read_study([good.to_bytes(), bad], settings or DicomSettings())
    message = str(caught.value)
    assert message.startswith("image 1: "), message
    assert caught.value.image_index == 1
    for secret in good.patient.secrets:
        assert secret not in message
    return caught.value


def test_a_valid_image_passes_with_its_attributes(good: SynthImage) -> None:
    header = read_header(good.to_bytes(), 0, DicomSettings())
    assert (header.rows, header.columns, header.bits_stored, header.photometric) == (128, 104, 12, "MONOCHROME2")
    assert header.sop_instance_uid == good.dataset.SOPInstanceUID and not header.forced


def test_empty_file(good: SynthImage) -> None:
    reject(good, b"", BadRequest, "empty")


def test_not_dicom(good: SynthImage) -> None:
    reject(good, b"this is a PNG, honestly" * 40, BadRequest, "not a")


def test_random_bytes(good: SynthImage) -> None:
    reject(good, np.random.default_rng(0).bytes(5000), BadRequest, "DICOM")


def test_missing_part10_header_is_tolerated_when_force_reading_gives_an_image(good: SynthImage) -> None:
    ds = dcmread(BytesIO(good.to_bytes()))
    del ds.file_meta
    ds.preamble = None
    blob = dicom_bytes(ds, part10=False)
    assert blob[128:132] != b"DICM"
    header = read_header(blob, 0, DicomSettings())
    assert header.forced and header.transfer_syntax == ImplicitVRLittleEndian
    pixels = decode_pixels(blob, header.transfer_syntax, 0, forced=True)
    np.testing.assert_array_equal(pixels, good.dataset.pixel_array)


def test_missing_sop_instance_uid(good: SynthImage) -> None:
    reject(good, edited(good, SOPInstanceUID=None), BadRequest, "missing SOPInstanceUID")


def test_modality_not_mg(good: SynthImage) -> None:
    reject(good, edited(good, Modality="CT"), Unprocessable, "Modality is 'CT'")


def test_for_processing_sop_class(good: SynthImage) -> None:
    reject(good, edited(good, SOPClassUID="1.2.840.10008.5.1.4.1.1.1.2.1"), Unprocessable, "for processing")


def test_for_processing_presentation_intent(good: SynthImage) -> None:
    reject(good, edited(good, PresentationIntentType="FOR PROCESSING"), Unprocessable, "for processing")


def test_photometric_not_monochrome(good: SynthImage) -> None:
    reject(good, edited(good, PhotometricInterpretation="RGB"), Unprocessable, "Photometric Interpretation 'RGB'")


def test_samples_per_pixel(good: SynthImage) -> None:
    reject(good, edited(good, SamplesPerPixel=3), Unprocessable, "SamplesPerPixel is 3")


def test_bits_stored_above_bits_allocated(good: SynthImage) -> None:
    reject(good, edited(good, BitsStored=17), BadRequest, "BitsStored 17")


def test_bits_allocated_32(good: SynthImage) -> None:
    reject(good, edited(good, BitsAllocated=32), Unprocessable, "BitsAllocated 32")


@pytest.fixture(scope="module")
def larger() -> bytes:
    return synth_image(28, laterality="R", study_seed=21, rows=256, columns=208).to_bytes()


def test_rows_over_cap(good: SynthImage, larger: bytes) -> None:
    reject(good, larger, PayloadTooLarge, "256 x 208 pixels", DicomSettings(max_rows=200))


def test_columns_over_cap(good: SynthImage, larger: bytes) -> None:
    reject(good, larger, PayloadTooLarge, "limit is 6144 x 150", DicomSettings(max_columns=150))


def test_multi_frame_is_unprocessable(good: SynthImage) -> None:
    reject(good, edited(good, NumberOfFrames=2), Unprocessable, r"multi-frame \(2 frames")


def test_tomosynthesis_is_unprocessable(good: SynthImage) -> None:
    tomosynthesis = edited(good, SOPClassUID="1.2.840.10008.5.1.4.1.1.13.1.3", NumberOfFrames=60)
    reject(good, tomosynthesis, Unprocessable, "Breast Tomosynthesis")


def test_file_size_over_cap(good: SynthImage, larger: bytes) -> None:
    reject(good, larger, PayloadTooLarge, "bytes; the limit is 60000", DicomSettings(max_file_bytes=60000))


def test_huge_header_is_refused_before_any_allocation(good: SynthImage) -> None:
    blob = edited(good, Rows=65535, Columns=65535)
    tracemalloc.start()
    try:
        error = reject(good, blob, PayloadTooLarge, "65535 x 65535")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert error.status == 413
    assert peak < 20 * 1024 * 1024  # a 65535 x 65535 16-bit frame would be 8 GiB


def test_native_pixel_data_shorter_than_header(good: SynthImage) -> None:
    reject(good, edited(good, Rows=4000, Columns=4000), BadRequest, "fewer than one 4000 x 4000 frame")


def test_unsupported_transfer_syntax_is_named(good: SynthImage) -> None:
    ds = dcmread(BytesIO(good.to_bytes()))
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xd9"])
    ds.file_meta.TransferSyntaxUID = JPEGExtended12Bit  # 12-bit JPEG: Pillow reads 8-bit samples only
    error = reject(good, dicom_bytes(ds), Unprocessable, "JPEG Extended \\(Process 2 and 4\\)")
    assert "JPEG 2000" in str(error)  # the message lists what is supported


def _deflated(image: SynthImage) -> bytes:
    ds = dcmread(BytesIO(image.to_bytes()))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    return dicom_bytes(ds)


def test_deflated_within_the_cap_is_read_and_decoded(good: SynthImage) -> None:
    blob = _deflated(good)
    header = read_header(blob, 0, DicomSettings())
    pixels = decode_pixels(blob, header.transfer_syntax, 0)
    np.testing.assert_array_equal(pixels, good.dataset.pixel_array)


def test_deflated_beyond_the_inflate_cap(good: SynthImage) -> None:
    # The whole dataset inflates to ~27 kB; a 10 kB cap must stop it without inflating it all.
    reject(good, _deflated(good), PayloadTooLarge, "inflates to more than 10000 bytes",
           DicomSettings(max_inflated_bytes=10000))


def test_corrupt_deflate_stream(good: SynthImage) -> None:
    blob = bytearray(_deflated(good))
    blob[-2000:] = b"\x00" * 2000
    reject(good, bytes(blob), BadRequest, "not valid deflate data|not a readable DICOM")


def test_no_native_pixel_data_is_400_at_intake(good: SynthImage) -> None:
    reject(good, edited(good, PixelData=None), BadRequest, "fewer than one 128 x 104 frame")


def test_no_compressed_pixel_data_is_400_at_decode() -> None:
    ds = synth_image(22, syntax="j2k", **SIZE).dataset
    del ds.PixelData
    blob = dicom_bytes(ds)
    header = read_header(blob, 1, DicomSettings())
    with pytest.raises(BadRequest, match="image 1: the file has no Pixel Data"):
        decode_pixels(blob, header.transfer_syntax, 1)


def test_corrupt_jpeg2000_stream_is_400_at_decode() -> None:
    ds = synth_image(22, syntax="j2k", degraded=False, **SIZE).dataset
    codestream = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    codestream[2:80] = b"\x00" * 78  # the main header (SIZ, COD) is gone
    ds.PixelData = encapsulate([bytes(codestream)])
    blob = dicom_bytes(ds)
    header = read_header(blob, 2, DicomSettings())
    with pytest.raises(BadRequest, match="image 2: pixel data cannot be decoded as JPEG 2000"):
        decode_pixels(blob, header.transfer_syntax, 2)


def test_more_than_four_images_is_413() -> None:
    blob = synth_image(23, **SIZE).to_bytes()
    with pytest.raises(PayloadTooLarge, match="5 images in one study; the limit is 4"):
        read_study([blob] * 5, DicomSettings())


def test_no_image_is_400() -> None:
    with pytest.raises(BadRequest, match="empty"):
        read_study([], DicomSettings())


def test_same_laterality_and_view_twice() -> None:
    study = synth_study(24, images=3, **SIZE)
    twin = synth_image(24, index=7, laterality="L", view="CC", study_seed=24, **SIZE)
    blobs = [image.to_bytes() for image in study] + [twin.to_bytes()]
    with pytest.raises(BadRequest, match="image 3: images 0 and 3 are both L CC"):
        read_study(blobs, DicomSettings())


def test_same_instance_twice() -> None:
    blob = synth_image(25, **SIZE).to_bytes()
    with pytest.raises(BadRequest, match="images 0 and 1 are the same SOP instance"):
        read_study([blob, blob], DicomSettings())


def test_images_of_different_studies() -> None:
    first = synth_image(26, laterality="L", **SIZE)
    second = synth_image(27, laterality="R", **SIZE)
    with pytest.raises(BadRequest, match="different studies"):
        read_study([first.to_bytes(), second.to_bytes()], DicomSettings())
