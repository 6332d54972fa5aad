"""`duet dicom synth` writes the library's studies (`duet/synthetic_dicom.py`) and their truth to a folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydicom import dcmread
from typer.testing import CliRunner

from duet.dicom_synth import dicom_app
from duet.synthetic_dicom import synth_study


def test_cli_writes_studies_with_truth(tmp_path: Path) -> None:
    result = CliRunner().invoke(dicom_app, ["synth", "--out", str(tmp_path), "--studies", "2", "--images", "2",
                                            "--rows", "96", "--columns", "80", "--syntax", "jpegls", "--seed", "5",
                                            "--lesions", "1", "--diagnostic"])
    assert result.exit_code == 0, result.output
    truth = json.loads((tmp_path / "study_00006" / "truth.json").read_text())
    assert [entry["file"] for entry in truth["images"]] == ["0_LCC.dcm", "1_RCC.dcm"]
    expected = synth_study(6, images=2, rows=96, columns=80, syntax="jpegls", n_lesions=1, degraded=False)
    for entry, image in zip(truth["images"], expected):
        ds = dcmread(tmp_path / "study_00006" / entry["file"])
        assert ds.SOPInstanceUID == image.dataset.SOPInstanceUID == entry["sop_instance_uid"]
        np.testing.assert_allclose(entry["boxes"], image.boxes, atol=1e-3)
        assert entry["labels"] == image.labels and entry["degraded"] is False
        assert ds.file_meta.TransferSyntaxUID.name == entry["transfer_syntax"] == "JPEG-LS Lossless Image Compression"
    # The ground truth holds no patient data.
    text = (tmp_path / "study_00006" / "truth.json").read_text()
    assert not any(secret in text for secret in expected[0].patient.secrets)


def test_cli_writes_a_single_study_straight_into_the_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(dicom_app, ["synth", "--out", str(tmp_path), "--images", "1", "--rows", "64",
                                            "--columns", "52"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0_LCC.dcm", "truth.json"]


def test_cli_rejects_bad_options(tmp_path: Path) -> None:
    result = CliRunner().invoke(dicom_app, ["synth", "--out", str(tmp_path), "--syntax", "jpeg", "--rows", "32",
                                            "--columns", "32"])
    assert result.exit_code != 0 and "syntax" in result.output
