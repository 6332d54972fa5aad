"""dicom3tools' `dciodvfy` accepts what duet writes: synthetic MG in every transfer syntax, and the SR.

`dciodvfy` is Debian's `dicom3tools` (`.ci/run` installs it when run as root); without it these tests skip.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from duet.synthetic_dicom import BITS, PHOTOMETRICS, SYNTAXES, VOIS, synth_image, synth_study
from transformers_pre.dicom.findings import StudyFindings
from transformers_pre.dicom.report import Device, build_report
from transformers_pre.dicom.study import read_study
from transformers_pre.settings import DicomSettings

DCIODVFY = shutil.which("dciodvfy")
pytestmark = pytest.mark.skipif(
    DCIODVFY is None, reason="dciodvfy not installed (Debian package dicom3tools; .ci/run installs it as root)"
)
SIZE = {"rows": 64, "columns": 52}


def _problems(blob: bytes, folder: Path) -> tuple[list[str], list[str]]:
    """(errors, warnings) `dciodvfy` reports for one Part 10 file."""
    path = folder / "file.dcm"
    path.write_bytes(blob)
    result = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60, check=False)
    lines = (result.stdout + result.stderr).splitlines()
    errors = [line for line in lines if line.startswith(("Error", "Abort"))]
    assert (result.returncode != 0) == bool(errors), lines
    return errors, [line for line in lines if line.startswith("Warning")]


@pytest.mark.parametrize("photometric", PHOTOMETRICS)
@pytest.mark.parametrize("syntax", list(SYNTAXES))
def test_synthetic_mg_passes_dciodvfy_in_every_syntax(syntax: str, photometric: str, tmp_path: Path) -> None:
    image = synth_image(3, laterality="R", view="MLO", syntax=syntax, photometric=photometric, **SIZE)
    errors, warnings = _problems(image.to_bytes(), tmp_path)
    assert errors == []
    # The one warning: ViewPosition CC/MLO is what mammography vendors write, not a DX defined term.
    assert all("View Position" in warning for warning in warnings), warnings


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("voi", [voi for voi in VOIS if voi != "none"])
def test_every_voi_and_depth_passes_dciodvfy(voi: str, bits: int, tmp_path: Path) -> None:
    errors, _ = _problems(synth_image(4, voi=voi, bits=bits, **SIZE).to_bytes(), tmp_path)
    assert errors == []


def test_a_file_without_voi_is_flagged_for_exactly_that(tmp_path: Path) -> None:
    # voi="none" deliberately writes what a non-conformant source sends (the pipeline falls back to a window):
    # dciodvfy must name the missing VOI and nothing else, which also shows the check can fail.
    errors, _ = _problems(synth_image(5, voi="none", **SIZE).to_bytes(), tmp_path)
    assert errors and all("WindowCenter" in error or "VOILUTSequence" in error for error in errors), errors


def test_the_sr_duet_writes_passes_dciodvfy(tmp_path: Path) -> None:
    study = synth_study(31, images=2, **SIZE)
    images = read_study([image.to_bytes() for image in study], DicomSettings())
    findings = StudyFindings(
        boxes=np.array([[10, 20, 50, 60], [5.5, 5.25, 30, 40]], np.float32),
        scores=np.array([0.9, 0.4], np.float32),
        labels=["malignant_mass", "calcification"],
        image_index=np.array([0, 1], np.int32),
        quality=np.array([0.9, 0.8], np.float32),
        diagnostic=[True, True],
        malignancy=np.array([0.7, 0.1], np.float32),
        risk=0.73,
    )
    report = build_report(images, findings, Device.for_model("mammo_detector", b"model bytes"))
    errors, _ = _problems(report, tmp_path)
    assert errors == []
