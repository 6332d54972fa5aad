"""`duet dicom synth` writes the library's studies (`duet/synthetic_dicom.py`) and their truth to a folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from pydicom import dcmread
from typer.testing import CliRunner

from duet.dicom_synth import dicom_app
from duet.paths import ROOT
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
    for options, named in ((["--syntax", "jpeg", "--bits", "12"], "bits"), (["--syntax", "mpeg"], "syntax"),
                           (["--bits", "10"], "bits")):
        result = CliRunner().invoke(dicom_app, ["synth", "--out", str(tmp_path), "--rows", "32", "--columns",
                                                "32", *options])
        assert result.exit_code != 0 and named in result.output, (options, result.output)


def test_jpeg_baseline_needs_no_bits_option_through_the_real_cli(tmp_path: Path) -> None:
    """`duet dicom synth --syntax jpeg` in a real `python -m duet.cli` process: the bit depth follows the
    syntax."""
    completed = subprocess.run(
        [sys.executable, "-m", "duet.cli", "dicom", "synth", "--out", str(tmp_path), "--images", "1",
         "--rows", "64", "--columns", "52", "--syntax", "jpeg"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    ds = dcmread(tmp_path / "0_LCC.dcm")
    assert ds.file_meta.TransferSyntaxUID.name == "JPEG Baseline (Process 1)"
    assert (ds.BitsAllocated, ds.BitsStored) == (8, 8)
    assert ds.pixel_array.shape == (64, 52)


def test_default_bits_stay_12_for_lossless_syntaxes(tmp_path: Path) -> None:
    result = CliRunner().invoke(dicom_app, ["synth", "--out", str(tmp_path), "--images", "1", "--rows", "32",
                                            "--columns", "32", "--syntax", "j2k"])
    assert result.exit_code == 0, result.output
    ds = dcmread(tmp_path / "0_LCC.dcm")
    assert (ds.BitsAllocated, ds.BitsStored) == (16, 12)
