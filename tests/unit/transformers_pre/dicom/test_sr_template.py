"""The SR passes IHE AI Results' template check: PixelMed's DicomSRValidator over SRs from each path.

The matrix: 1 to 4 source images, every transfer syntax the intake accepts, findings and none, images gated out
as non-diagnostic, a model the card clears and one it does not. Each SR must have no PixelMed error and no
warning, no dciodvfy error, and be readable by dcmtk's `dsrdump` and by highdicom.

One case is held to a narrower rule: PixelMed 20220618 (Debian's libpixelmed-java) decides per "Imaging
Measurements" container, not per group, which template a measurement group follows; with exactly one Image
Region in the container it checks every group, the study and gated-image groups (TID 1501) too, against TID
1410, and reports two "Missing conditional content item" errors for each (docs/api.md, "The DICOM SR"). That test
fails on any other error or warning, and on those errors landing on a TID 1410 group.

PixelMed runs once for the whole matrix (tests/.../pixelmed/ValidateEach.java: its template rules compile in
~20 s, then ~5 s a file). Without java or /usr/share/java/pixelmed.jar (Debian: libpixelmed-java and
default-jre-headless; `.ci/run` installs them as root) the PixelMed tests skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes

from duet.synthetic_dicom import synth_study
from transformers_pre.clinical_use import ClinicalUse
from transformers_pre.dicom.findings import StudyFindings
from transformers_pre.dicom.report import Device, SeriesLabel, build_report
from transformers_pre.dicom.study import read_study
from transformers_pre.settings import DicomSettings

pytestmark = pytest.mark.slow  # PixelMed's validator in a JVM: seconds per test on 2 cores

JAVA = shutil.which("java")
PIXELMED_JAR = Path("/usr/share/java/pixelmed.jar")
VALIDATE_EACH = Path(__file__).parent / "pixelmed" / "ValidateEach.java"
DCIODVFY = shutil.which("dciodvfy")
DSRDUMP = shutil.which("dsrdump")
needs_pixelmed = pytest.mark.skipif(
    JAVA is None or not PIXELMED_JAR.exists(),
    reason="PixelMed's SR validator needs java and /usr/share/java/pixelmed.jar (Debian packages "
    "libpixelmed-java and default-jre-headless; .ci/run installs them as root)",
)
# PixelMed's template rules are large XPath expressions; the JDK's default XPath limits reject them.
JAVA_OPTIONS = ["-Djdk.xml.xpathExprOpLimit=0", "-Djdk.xml.xpathExprGrpLimit=0", "-Djdk.xml.xpathTotalOpLimit=0"]
LABELS = ("malignant_mass", "calcification", "benign_mass", "architectural_distortion")
CLEARED = ClinicalUse(cleared=True, notice=None)
NOT_CLEARED = ClinicalUse.not_cleared("NO CLINICAL VALIDITY: trained on synthetic phantoms only.")


@dataclass(frozen=True)
class Case:
    """One SR of the matrix: `findings` boxes spread over the diagnostic images, `gated` images (by index)
    below the quality threshold."""

    name: str
    syntax: str
    images: int
    findings: int
    gated: tuple[int, ...] = ()
    clinical_use: ClinicalUse = NOT_CLEARED

    @property
    def single_region(self) -> bool:
        return self.findings == 1


CASES = [
    Case("1 image, explicit, no finding", "explicit", 1, 0),
    Case("2 images, RLE, 2 findings, cleared model", "rle", 2, 2, clinical_use=CLEARED),
    Case("3 images, JPEG-LS, 3 findings, 1 gated", "jpegls", 3, 3, gated=(1,)),
    Case("4 images, JPEG 2000, 4 findings (one of another detector's class), 2 gated", "j2k", 4, 4, gated=(0, 3)),
    Case("2 images, JPEG Baseline, no finding, 1 gated", "jpeg", 2, 0, gated=(0,)),
    Case("4 images, explicit, 1 finding, 1 gated", "explicit", 4, 1, gated=(2,)),
]
IDS = [case.name for case in CASES]


def _report(case: Case) -> bytes:
    options = {"bits": 8} if case.syntax == "jpeg" else {}
    study = synth_study(41, images=case.images, rows=96, columns=80, syntax=case.syntax, **options)
    images = read_study([image.to_bytes() for image in study], DicomSettings())
    diagnostic = [index not in case.gated for index in range(case.images)]
    usable = [index for index, ok in enumerate(diagnostic) if ok]
    image_index = np.array([usable[number % len(usable)] for number in range(case.findings)], np.int32)
    findings = StudyFindings(
        boxes=np.array([[8 + 3 * n, 10 + 2 * n, 40 + n, 52 + n] for n in range(case.findings)],
                       np.float32).reshape(-1, 4),
        scores=np.linspace(0.95, 0.4, case.findings).astype(np.float32),
        labels=[LABELS[n % len(LABELS)] for n in range(case.findings)],
        image_index=image_index,
        quality=np.array([0.9 if ok else 0.12 for ok in diagnostic], np.float32),
        diagnostic=diagnostic,
        malignancy=np.full(case.images, 0.2, np.float32),
        risk=0.31,
    )
    device = Device.for_model("mammo_detector", b"template test")
    return build_report(images, findings, device, clinical_use=case.clinical_use,
                        series=SeriesLabel(number=77, description="duet test results"))


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sr-template")
    paths = {}
    for number, case in enumerate(CASES):
        paths[case.name] = folder / f"case{number}.dcm"
        paths[case.name].write_bytes(_report(case))
    return paths


@pytest.fixture(scope="module")
def pixelmed(reports: dict[str, Path]) -> dict[str, list[str]]:
    """PixelMed's report lines per case, from one JVM."""
    if JAVA is None or not PIXELMED_JAR.exists():
        pytest.skip("PixelMed not installed")
    names = list(reports)
    result = subprocess.run(
        [JAVA, *JAVA_OPTIONS, "-cp", str(PIXELMED_JAR), str(VALIDATE_EACH), *(str(reports[n]) for n in names)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    sections = re.findall(r"^=== (.+?)\n(.*?)^=== end$", result.stdout, flags=re.MULTILINE | re.DOTALL)
    by_path = {path: body.splitlines() for path, body in sections}
    assert set(by_path) == {str(reports[n]) for n in names}, result.stdout[-2000:]
    return {name: by_path[str(reports[name])] for name in names}


def _errors(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("Error")]


def _warnings(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("Warning")]


@needs_pixelmed
@pytest.mark.parametrize("case", [case for case in CASES if not case.single_region], ids=lambda case: case.name)
def test_pixelmed_finds_no_error_and_no_warning(case: Case, pixelmed: dict[str, list[str]]) -> None:
    lines = pixelmed[case.name]
    assert "Found Root Template TID_1500 (MeasurementReport)" in lines, lines
    assert "Root Template Validation Complete" in lines, lines
    assert _errors(lines) == []
    assert _warnings(lines) == []


@needs_pixelmed
@pytest.mark.parametrize("case", [case for case in CASES if case.single_region], ids=lambda case: case.name)
def test_single_region_sr_has_only_pixelmeds_per_container_dispatch_errors(
    case: Case, pixelmed: dict[str, list[str]], reports: dict[str, Path]
) -> None:
    lines = pixelmed[case.name]
    assert "Root Template Validation Complete" in lines, lines
    assert _warnings(lines) == []
    dispatch = re.compile(
        r'^Error: Template 1410 PlanarROIMeasurements/\[Row 1\] CONTAINER \(125007,DCM,"Measurement Group"\)/'
        r'\[Row (5|7)\] .*: within 1\.(\d+)\.(\d+): /CONTAINER \(126000,DCM,"Imaging Measurement Report"\)/'
        r'CONTAINER \(126010,DCM,"Imaging Measurements"\)/CONTAINER \(125007,DCM,"Measurement Group"\): '
        r"Missing conditional content item$"
    )
    matches = [dispatch.match(line) for line in _errors(lines)]
    assert all(matches), [line for line, match in zip(_errors(lines), matches) if not match]
    sr = pydicom.dcmread(reports[case.name])
    (position, container), = [
        (number, item) for number, item in enumerate(sr.ContentSequence, start=1)
        if item.ConceptNameCodeSequence[0].CodeValue == "126010"
    ]
    without_region = {
        number for number, group in enumerate(container.ContentSequence, start=1)
        if not any(item.ValueType == "SCOORD" for item in group.ContentSequence)
    }
    # Both conditional rows (5 and 7) are reported for every group without an Image Region, and for no other.
    reported = [(int(match.group(2)), int(match.group(3)), match.group(1)) for match in matches if match]
    assert sorted(reported) == sorted((position, group, row) for group in without_region for row in ("5", "7"))


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy not installed (Debian package dicom3tools)")
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_dciodvfy_finds_no_error(case: Case, reports: dict[str, Path]) -> None:
    result = subprocess.run([DCIODVFY, str(reports[case.name])], capture_output=True, text=True, timeout=60,
                            check=False)
    lines = (result.stdout + result.stderr).splitlines()
    assert [line for line in lines if line.startswith(("Error", "Abort"))] == []


@pytest.mark.skipif(DSRDUMP is None, reason="dsrdump not installed (Debian package dcmtk)")
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_dsrdump_reads_the_tree(case: Case, reports: dict[str, Path]) -> None:
    result = subprocess.run([DSRDUMP, str(reports[case.name])], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert '"Imaging Measurement Report"' in result.stdout
    assert result.stdout.count('"Image Region"') == case.findings
    assert result.stdout.count('"Unusable - Quality renders image unusable"') == len(case.gated)
    assert ('"NOT FOR CLINICAL USE:' in result.stdout) == (not case.clinical_use.cleared)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_highdicom_reads_every_group(case: Case, reports: dict[str, Path]) -> None:
    sr = hd.sr.srread(BytesIO(reports[case.name].read_bytes()))
    assert len(sr.content.get_planar_roi_measurement_groups()) == case.findings
    gated = [group for group in sr.content.get_image_measurement_groups()
             if group.finding_type is not None and group.finding_type.value == "111235"]
    assert len(gated) == len(case.gated)
    (study,) = [group for group in sr.content.get_image_measurement_groups() if group.finding_type is None]
    assert study.get_measurements(name=codes.DCM.ProbabilityOfCancer)[0].value == pytest.approx(0.31)
    assert sr.SeriesNumber == 77
    assert sr.SeriesDescription == (
        "duet test results" if case.clinical_use.cleared else "NOT FOR CLINICAL USE - duet test results")
