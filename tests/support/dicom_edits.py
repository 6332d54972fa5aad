"""Hostile variants of a synthetic mammogram for the input tests: attributes changed or removed, and a data set
written back with or without its file meta."""

from __future__ import annotations

from io import BytesIO

from pydicom import dcmread
from pydicom.dataset import Dataset

from duet.synthetic_dicom import SynthImage


def dicom_bytes(ds: Dataset, *, part10: bool = True) -> bytes:
    """`ds` as a file: Part 10 with its file meta, or (part10=False) a bare implicit VR little endian data set."""
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=part10, implicit_vr=None if part10 else True,
               little_endian=None if part10 else True)
    return buffer.getvalue()


def edited(image: SynthImage, **attributes: object) -> bytes:
    """`image` with each keyword set to its value, or removed where the value is None."""
    ds = dcmread(BytesIO(image.to_bytes()))
    for keyword, value in attributes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return dicom_bytes(ds)
