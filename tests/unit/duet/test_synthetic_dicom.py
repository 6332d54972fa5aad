"""The synthetic MG DICOM writer: deterministic, decodable in every syntax, faithful headers and ground truth."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pytest
from pydicom import dcmread

from duet.synthetic_dicom import (
    BITS,
    MG_FOR_PRESENTATION,
    SYNTAXES,
    VOIS,
    synth_image,
    synth_patient,
    synth_study,
)

SIZE = {"rows": 160, "columns": 128}


@pytest.mark.parametrize("syntax", list(SYNTAXES))
def test_same_seed_same_file_in_every_syntax(syntax: str) -> None:
    first = synth_image(3, syntax=syntax, **SIZE).to_bytes()
    assert first == synth_image(3, syntax=syntax, **SIZE).to_bytes()
    assert first != synth_image(4, syntax=syntax, **SIZE).to_bytes()


@pytest.mark.parametrize("bits", BITS)
def test_every_syntax_decodes_losslessly_to_the_same_pixels(bits: int) -> None:
    decoded = {}
    for syntax, uid in SYNTAXES.items():
        if syntax == "jpeg":  # lossy and 8-bit: test_jpeg_baseline_is_8_bit_lossy_and_close
            continue
        ds = dcmread(BytesIO(synth_image(5, bits=bits, syntax=syntax, **SIZE).to_bytes()))
        assert ds.file_meta.TransferSyntaxUID == uid
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, bits, bits - 1, 0)
        decoded[syntax] = ds.pixel_array
    reference = decoded.pop("explicit")
    assert reference.shape == (160, 128) and reference.max() <= 2**bits - 1
    assert reference.max() > 2 ** (bits - 1)  # the range is used, not a dark image
    for pixels in decoded.values():
        np.testing.assert_array_equal(pixels, reference)


def test_jpeg_baseline_is_8_bit_lossy_and_close() -> None:
    lossless = dcmread(BytesIO(synth_image(5, bits=16, **SIZE).to_bytes())).pixel_array
    ds = dcmread(BytesIO(synth_image(5, syntax="jpeg", **SIZE).to_bytes()))
    assert ds.file_meta.TransferSyntaxUID == SYNTAXES["jpeg"]
    assert (ds.BitsAllocated, ds.BitsStored, ds.LossyImageCompression) == (8, 8, "01")
    assert ds.LossyImageCompressionMethod == "ISO_10918_1"
    difference = np.abs(ds.pixel_array.astype(np.float32) - lossless / 257.0)
    assert np.median(difference) <= 2.0


def test_mg_for_presentation_header() -> None:
    image = synth_image(6, laterality="R", view="MLO", **SIZE)
    ds = dcmread(BytesIO(image.to_bytes()))
    assert ds.SOPClassUID == MG_FOR_PRESENTATION and ds.Modality == "MG"
    assert ds.PresentationIntentType == "FOR PRESENTATION"
    assert (ds.ImageLaterality, ds.ViewPosition, list(ds.PatientOrientation)) == ("R", "MLO", ["P", "FL"])
    assert ds.ViewCodeSequence[0].CodeValue == "399368009"
    assert ds.PatientName == image.patient.name and ds.PatientID == image.patient.patient_id
    assert ds.PatientBirthDate == image.patient.birth_date


def test_right_images_are_mirrored_with_their_boxes() -> None:
    left = synth_image(7, laterality="L", n_lesions=2, degraded=False, **SIZE)
    right = synth_image(7, laterality="R", n_lesions=2, degraded=False, **SIZE)
    np.testing.assert_array_equal(right.dataset.pixel_array, left.dataset.pixel_array[:, ::-1])
    assert len(left.boxes) == 2 and left.labels == right.labels
    np.testing.assert_allclose(right.boxes[:, [0, 2]], 128 - left.boxes[:, [2, 0]], rtol=1e-6)
    np.testing.assert_allclose(right.boxes[:, [1, 3]], left.boxes[:, [1, 3]])
    # Tissue is stored against the chest wall: the right image's right half is brighter.
    pixels = right.dataset.pixel_array.astype(float)
    assert pixels[:, 64:].mean() > pixels[:, :64].mean()


def test_lesions_are_brighter_inside_their_stored_boxes() -> None:
    image = synth_image(8, laterality="R", n_lesions=3, degraded=False, rows=400, columns=320)
    pixels = image.dataset.pixel_array.astype(float)
    for x0, y0, x1, y1 in image.boxes:
        inside = pixels[int(y0):int(np.ceil(y1)), int(x0):int(np.ceil(x1))].max()
        ring = pixels[max(int(y0) - 30, 0):int(y1) + 30, max(int(x0) - 30, 0):int(x1) + 30]
        assert inside >= np.percentile(ring, 95)


def test_monochrome1_stores_the_inverse() -> None:
    m2 = synth_image(9, photometric="MONOCHROME2", bits=14, **SIZE).dataset
    m1 = synth_image(9, photometric="MONOCHROME1", bits=14, **SIZE).dataset
    np.testing.assert_array_equal(m1.pixel_array.astype(int), 2**14 - 1 - m2.pixel_array.astype(int))
    assert (m1.PresentationLUTShape, m2.PresentationLUTShape) == ("INVERSE", "IDENTITY")


@pytest.mark.parametrize("voi", VOIS)
def test_voi_modes(voi: str) -> None:
    ds = dcmread(BytesIO(synth_image(10, voi=voi, **SIZE).to_bytes()))
    has_window = "WindowCenter" in ds
    assert has_window == (voi in ("window", "multi_window", "linear_exact", "sigmoid"))
    assert ("VOILUTSequence" in ds) == (voi == "voi_lut")
    if voi == "multi_window":
        assert len(ds.WindowCenter) == 2 and len(ds.WindowWidth) == 2
    if voi in ("linear_exact", "sigmoid"):
        assert ds.VOILUTFunction == voi.upper()
    if voi == "voi_lut":
        assert list(ds.VOILUTSequence[0].LUTDescriptor) == [4096, 0, 16]


def test_study_shares_patient_and_uids_and_follows_hanging_order() -> None:
    study = synth_study(11, images=4, **SIZE)
    assert [(image.laterality, image.view) for image in study] == [("L", "CC"), ("R", "CC"), ("L", "MLO"),
                                                                   ("R", "MLO")]
    assert len({image.dataset.StudyInstanceUID for image in study}) == 1
    assert len({image.dataset.SOPInstanceUID for image in study}) == 4
    assert len({image.patient.name for image in study}) == 1
    assert synth_patient(11) == study[0].patient and synth_patient(12) != study[0].patient


def test_invalid_options_are_refused() -> None:
    with pytest.raises(ValueError, match="bits"):
        synth_image(1, bits=10, **SIZE)
    with pytest.raises(ValueError, match="syntax"):
        synth_image(1, syntax="jpeg2", **SIZE)
    with pytest.raises(ValueError, match="bits must be 8 for syntax 'jpeg'"):
        synth_image(1, syntax="jpeg", bits=12, **SIZE)
    with pytest.raises(ValueError, match="1 to 4"):
        synth_study(1, images=5, **SIZE)


def test_vendor_like_headers_match_the_photometric_interpretation() -> None:
    for photometric, shape, sign in (("MONOCHROME2", "IDENTITY", -1), ("MONOCHROME1", "INVERSE", 1)):
        ds = dcmread(BytesIO(synth_image(6, photometric=photometric, **SIZE).to_bytes()))
        assert ds.PresentationLUTShape == shape and ds.PixelIntensityRelationshipSign == sign
        assert ds.PixelIntensityRelationship == "LOG" and ds.LossyImageCompression == "00"
        assert (float(ds.RescaleSlope), float(ds.RescaleIntercept), ds.RescaleType) == (1.0, 0.0, "US")
        assert ds.ViewCodeSequence[0].ViewModifierCodeSequence == []
        assert ds.AnatomicRegionSequence[0].CodeValue == "76752008" and ds.OrganExposed == "BREAST"


@pytest.mark.slow
def test_full_size_mammogram() -> None:
    image = synth_image(12, rows=4096, columns=3328, bits=16, syntax="explicit", n_lesions=2, degraded=False)
    ds = dcmread(BytesIO(image.to_bytes()))
    assert ds.pixel_array.shape == (4096, 3328)
    assert image.boxes.max() > 100  # boxes in full-size stored pixels
