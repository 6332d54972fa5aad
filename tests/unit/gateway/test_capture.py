"""The Secondary Capture built from a real synthetic mammogram: a valid SC IOD of the same study, boxes burned
in where the findings are."""

from __future__ import annotations

import shutil
import subprocess
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from duet.synthetic_dicom import synth_study
from gateway.capture import COLOURS, secondary_captures


def test_findings_are_burned_into_a_valid_secondary_capture(tmp_path: Path) -> None:
    study = synth_study(11, images=3)  # the third is an MLO (PatientOrientation A\FR)
    sources = [image.to_bytes() for image in study]
    boxes = np.array([[40, 50, 140, 170], [10, 10, 60, 60]], dtype=np.float32)
    captures = secondary_captures(sources, boxes, ["malignant_mass", "calcification"], np.array([1, 1]))
    assert sorted(captures) == ["sc0", "sc1", "sc2"]
    assert list(dcmread(BytesIO(captures["sc2"][1])).PatientOrientation) == ["A", "FR"]
    uid, data = captures["sc1"]
    capture = dcmread(BytesIO(data))
    source = study[1].dataset
    assert capture.SOPInstanceUID == uid
    assert capture.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert capture.StudyInstanceUID == source.StudyInstanceUID
    assert capture.PatientID == source.PatientID
    assert capture.SeriesInstanceUID != source.SeriesInstanceUID
    pixels = capture.pixel_array
    assert pixels.shape == (source.Rows, source.Columns, 3)
    assert tuple(pixels[50, 90]) == COLOURS["malignant_mass"]  # top edge of the first box
    assert tuple(pixels[10, 30]) == COLOURS["calcification"]
    inside = pixels[100, 90]
    assert inside[0] == inside[1] == inside[2]  # grey: nothing drawn inside a box
    untouched = dcmread(BytesIO(captures["sc0"][1])).pixel_array
    assert (untouched[..., 0] == untouched[..., 1]).all()  # no finding on image 0: grey only
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not installed (Debian package dicom3tools)")
    path = tmp_path / "sc.dcm"
    path.write_bytes(data)
    verify = subprocess.run(["dciodvfy", str(path)], check=False, capture_output=True, text=True)
    errors = [line for line in (verify.stdout + verify.stderr).splitlines() if line.startswith("Error")]
    assert not errors, errors
