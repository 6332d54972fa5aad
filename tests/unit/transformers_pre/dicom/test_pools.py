"""Which views the pools send to worker processes."""

from __future__ import annotations

from duet.synthetic_dicom import synth_study
from transformers_pre.dicom.pools import DecodePools
from transformers_pre.dicom.study import read_study
from transformers_pre.settings import DicomSettings


def test_uncompressed_views_stay_on_threads() -> None:
    study = synth_study(55, images=1, rows=64, columns=52)
    header = read_study([study[0].to_bytes()], DicomSettings())[0].header
    assert not DecodePools(DicomSettings()).uses_process(header)
