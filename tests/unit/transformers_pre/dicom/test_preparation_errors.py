"""An error raised while preparing one view's pixels names that view, whatever stage raised it."""

from __future__ import annotations

import asyncio
from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from duet.synthetic_dicom import synth_study
from transformers_pre.dicom.pools import DecodePools
from transformers_pre.dicom.preparation import prepare_study
from transformers_pre.dicom.study import read_study
from transformers_pre.errors import Unprocessable
from transformers_pre.settings import DicomSettings


def test_a_modality_lut_that_cannot_apply_names_its_image() -> None:
    study = synth_study(57, images=2, rows=64, columns=52, degraded=False)
    ds = dcmread(BytesIO(study[1].to_bytes()))
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 99]  # 99 bits per entry: pydicom cannot apply it
    item.ModalityLUTType = "OD"
    item.LUTData = bytes(2 * 4096)
    ds.ModalityLUTSequence = Sequence([item])
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    blobs = [study[0].to_bytes(), buffer.getvalue()]
    images = read_study(blobs, DicomSettings())
    pools = DecodePools(DicomSettings(decode_workers=2))
    try:
        with pytest.raises(Unprocessable) as caught:
            asyncio.run(prepare_study(blobs, images, (32, 26), pools, "mammography"))
    finally:
        pools.shutdown()
    assert caught.value.image_index == 1
    assert str(caught.value).startswith("image 1: ")
