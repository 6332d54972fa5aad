"""Synthetic mammography DICOM for tests, demos, benchmarks and load tests (the CLI: `duet dicom synth`,
`duet/dicom_synth.py`).

Real MG "for presentation" files (Digital Mammography X-Ray Image Storage - For Presentation) built on the detector's
phantom generator (`models.detector.phantom`): sizes up to 4096 x 3328, 12/14/16-bit, MONOCHROME1 or
MONOCHROME2, with a window (LINEAR, two-valued, LINEAR_EXACT or SIGMOID), with a VOI LUT Sequence or with no VOI
at all, left/right x CC/MLO, written in Explicit VR Little Endian, RLE Lossless, JPEG-LS Lossless or JPEG 2000
Lossless, or 8-bit in lossy JPEG Baseline (Pillow's libjpeg, quality 95). Headers are those of a conformant MG
IOD (dicom3tools' `dciodvfy` reports no error; only voi="none" leaves out the VOI a "for presentation" image must
carry, on purpose), with what vendors write: Pixel Intensity Relationship LOG and its sign, identity rescale,
Presentation LUT Shape IDENTITY/INVERSE per photometric interpretation, breast anatomic region, view and (empty)
view modifier codes. Patients are synthetic (random names, IDs and birth dates) so tests can check they never
reach a log.

Stored geometry: left breasts are stored chest wall left (PatientOrientation A), right breasts mirrored, chest
wall right (PatientOrientation P), as mammograms are usually hung. The ground truth (`SynthImage.boxes`) is in
stored pixels: (x_min, y_min, x_max, y_max), pixel (r, c) covering [c, c+1) x [r, r+1).

Everything is deterministic per seed (pixels, UIDs, patient). Phantoms are seeded in the TEST namespace of
`models.seed_spaces` (or HELD_OUT when asked), which by construction shares no random stream with the
detector's training or build-time held-out phantoms, whatever the seed and view index.
"""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Literal

import numpy as np
from pydicom import dcmwrite
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from models.detector.phantom import CLASS_NAMES, make_phantom
from models.seed_spaces import Namespace, phantom_seed

MG_FOR_PRESENTATION = UID("1.2.840.10008.5.1.4.1.1.1.2")
Photometric = Literal["MONOCHROME2", "MONOCHROME1"]
Voi = Literal["window", "multi_window", "linear_exact", "sigmoid", "voi_lut", "none"]
Syntax = Literal["explicit", "rle", "jpegls", "j2k"]
PHOTOMETRICS: tuple[str, ...] = ("MONOCHROME2", "MONOCHROME1")
VOIS: tuple[str, ...] = ("window", "multi_window", "linear_exact", "sigmoid", "voi_lut", "none")
SYNTAXES: dict[str, UID] = {
    "explicit": ExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpegls": JPEGLSLossless,
    "j2k": JPEG2000Lossless,
    "jpeg": JPEGBaseline8Bit,
}
# The encoder pinned per syntax (pydicom's `encoding_plugin`).
ENCODERS: dict[str, str] = {"rle": "pylibjpeg", "jpegls": "pyjpegls", "j2k": "pylibjpeg"}
BITS: tuple[int, ...] = (12, 14, 16)
JPEG_QUALITY = 95
# The study's hanging order; a study of n images takes the first n.
VIEWS: tuple[tuple[str, str], ...] = (("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO"))
VIEW_CODES = {"CC": ("399162004", "cranio-caudal"), "MLO": ("399368009", "medio-lateral oblique")}
BREAST_CODE = ("76752008", "Breast")
# PatientOrientation (row direction, column direction) per laterality and view.
ORIENTATION = {("L", "CC"): ["A", "R"], ("R", "CC"): ["P", "L"], ("L", "MLO"): ["A", "FR"], ("R", "MLO"): ["P", "FL"]}
UID_ROOT = "duet-synth"
DEFAULT_OUT = Path("synthetic-dicom")


@dataclass(frozen=True)
class SynthPatient:
    """A synthetic patient: random, recognisable strings (tests grep logs for them)."""

    name: str  # DICOM PN, "FAMILY^GIVEN"
    patient_id: str
    birth_date: str  # YYYYMMDD

    @property
    def secrets(self) -> list[str]:
        """Every string of the patient module that must never appear in a log."""
        family, given = self.name.split("^")
        return [family, given, self.patient_id, self.birth_date]


@dataclass(frozen=True)
class SynthImage:
    """One synthetic mammogram and its ground truth in stored pixels."""

    dataset: Dataset
    boxes: np.ndarray  # float32 [n, 4] stored pixels
    labels: list[str]  # class names, CLASS_NAMES order
    degraded: bool
    laterality: str
    view: str
    patient: SynthPatient = field(repr=False)

    @property
    def malignant(self) -> bool:
        return CLASS_NAMES[0] in self.labels

    def to_bytes(self) -> bytes:
        """The DICOM Part 10 file."""
        buffer = BytesIO()
        dcmwrite(buffer, self.dataset, enforce_file_format=True)
        return buffer.getvalue()

    def truth(self) -> dict:
        """JSON-serialisable ground truth (no patient data)."""
        return {
            "sop_instance_uid": str(self.dataset.SOPInstanceUID),
            "laterality": self.laterality,
            "view": self.view,
            "rows": int(self.dataset.Rows),
            "columns": int(self.dataset.Columns),
            "transfer_syntax": self.dataset.file_meta.TransferSyntaxUID.name,
            "boxes": [[round(float(v), 3) for v in box] for box in self.boxes],
            "labels": self.labels,
            "degraded": self.degraded,
            "malignant": self.malignant,
        }


def _uid(seed: int, *parts: object) -> UID:
    """A deterministic UID under the 2.25 (UUID-derived) root, from a hash of the seed and the parts."""
    digest = hashlib.sha256("/".join([UID_ROOT, str(seed), *map(str, parts)]).encode()).digest()
    return UID(f"2.25.{int.from_bytes(digest[:16], 'big') >> 1}")


def _code(value: str, meaning: str, scheme: str = "SCT") -> Dataset:
    """One Code Sequence item."""
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def synth_patient(seed: int) -> SynthPatient:
    """A deterministic synthetic patient for `seed`."""
    rng = np.random.default_rng([seed, 0x5EED])
    letters = np.array(list(string.ascii_uppercase))
    family = "SYN" + "".join(rng.choice(letters, 7))
    given = "".join(rng.choice(letters, 6)).capitalize()
    patient_id = "SYNID" + "".join(str(d) for d in rng.integers(0, 10, 9))
    year, month, day = int(rng.integers(1940, 1986)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
    return SynthPatient(name=f"{family}^{given}", patient_id=patient_id, birth_date=f"{year:04d}{month:02d}{day:02d}")


def _stored_values(image: np.ndarray, bits: int, photometric: str) -> np.ndarray:
    """Phantom intensities [0, 1] (0 = air) -> stored values; MONOCHROME1 stores air as the largest value."""
    top = 2**bits - 1
    stored = np.rint(np.clip(image, 0.0, 1.0) * top).astype(np.uint16)
    return (top - stored).astype(np.uint16) if photometric == "MONOCHROME1" else stored


def _set_voi(ds: Dataset, voi: str, bits: int, photometric: str) -> None:
    """Window / VOI LUT attributes. The default window maps the stored range linearly onto the display range."""
    top = 2**bits - 1
    center, width = (top + 1) / 2, float(top + 1)
    if voi in ("window", "linear_exact", "sigmoid"):
        ds.WindowCenter = f"{center:.1f}"
        ds.WindowWidth = f"{width:.1f}" if voi != "sigmoid" else f"{width / 2:.1f}"
        if voi != "window":
            ds.VOILUTFunction = voi.upper()
    elif voi == "multi_window":
        # The first value is the default; the second, narrower one is an alternative some viewers offer.
        shifted = top - 0.55 * top if photometric == "MONOCHROME1" else 0.55 * top
        ds.WindowCenter = [f"{center:.1f}", f"{shifted:.1f}"]
        ds.WindowWidth = [f"{width:.1f}", f"{0.6 * top:.1f}"]
        ds.WindowCenterWidthExplanation = ["DEFAULT", "DENSE"]
    elif voi == "voi_lut":
        # A gamma-like curve over every stored value, 16-bit entries, as OW (what most modalities write).
        entries = top + 1
        ramp = np.linspace(0.0, 1.0, entries)
        curve = ramp**0.8 if photometric == "MONOCHROME2" else 1.0 - (1.0 - ramp) ** 0.8
        item = Dataset()
        item.LUTDescriptor = [entries if entries < 65536 else 0, 0, 16]
        item.add(DataElement(0x00283006, "OW", np.rint(curve * 65535).astype("<u2").tobytes()))
        item.LUTExplanation = "SYNTHETIC GAMMA 0.8"
        ds.VOILUTSequence = Sequence([item])
    elif voi != "none":
        raise ValueError(f"unknown VOI mode {voi!r}; choose from {VOIS}")


def synth_image(
    seed: int,
    *,
    index: int = 0,
    laterality: str = "L",
    view: str = "CC",
    rows: int = 512,
    columns: int = 416,
    bits: int | None = None,
    photometric: str = "MONOCHROME2",
    voi: str = "window",
    syntax: str = "explicit",
    n_lesions: int | None = None,
    degraded: bool | None = None,
    study_seed: int | None = None,
    namespace: Namespace = Namespace.TEST,
) -> SynthImage:
    """One synthetic MG image.

    seed: the phantom, with `index` and `namespace` (`make_phantom` gets a generator seeded by
    `models.seed_spaces.phantom_seed(namespace, seed, index)`); seed and index in [0, 2**32).
    study_seed: seeds the patient and the study/series UIDs, so images of one study share them (default `seed`).
    rows, columns: stored size in pixels (16 .. 4096 x 3328 and beyond); bits: BitsStored (12, 14 or 16, in 16
    allocated bits; default 12), except JPEG Baseline: 8 in 8; photometric, voi, syntax: see the module docstring
    and VOIS / SYNTAXES.
    """
    jpeg = syntax == "jpeg"
    bits = bits if bits is not None else 8 if jpeg else 12
    if (bits != 8) if jpeg else (bits not in BITS):
        raise ValueError(f"bits must be {8 if jpeg else f'one of {BITS}'} for syntax {syntax!r}, got {bits}")
    if photometric not in PHOTOMETRICS:
        raise ValueError(f"photometric must be one of {PHOTOMETRICS}, got {photometric!r}")
    if syntax not in SYNTAXES:
        raise ValueError(f"syntax must be one of {tuple(SYNTAXES)}, got {syntax!r}")
    if (laterality, view) not in ORIENTATION:
        raise ValueError(f"laterality/view must be one of {list(ORIENTATION)}, got {(laterality, view)}")
    study_seed = seed if study_seed is None else study_seed
    phantom = make_phantom(np.random.default_rng(phantom_seed(namespace, seed, index)), rows, columns,
                           n_lesions=n_lesions, degraded=degraded)
    image, boxes = phantom.image, phantom.boxes.copy()
    if laterality == "R":
        image = image[:, ::-1]
        boxes[:, [0, 2]] = columns - boxes[:, [2, 0]]
    pixels = _stored_values(image, bits, photometric)
    patient = synth_patient(study_seed)

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MG_FOR_PRESENTATION
    ds.file_meta.MediaStorageSOPInstanceUID = _uid(study_seed, "image", seed, index)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = MG_FOR_PRESENTATION
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = _uid(study_seed, "study")
    ds.SeriesInstanceUID = _uid(study_seed, "series")
    ds.FrameOfReferenceUID = _uid(study_seed, "frame", laterality)
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = "F"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20260101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "090000"
    ds.AccessionNumber = f"SYNACC{study_seed % 10**8:08d}"
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = index + 1
    ds.ReferringPhysicianName = ""
    ds.Modality = "MG"
    ds.Manufacturer = "duet synthetic"
    ds.ManufacturerModelName = "duet.dicom_synth"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.BurnedInAnnotation = "NO"
    ds.ImageLaterality = laterality
    ds.ViewPosition = view
    view_code = _code(*VIEW_CODES[view])
    # Standard views have no modifier (no magnification, spot compression, ...); the sequence is Type 2.
    view_code.ViewModifierCodeSequence = Sequence([])
    ds.ViewCodeSequence = Sequence([view_code])
    ds.AnatomicRegionSequence = Sequence([_code(*BREAST_CODE)])
    ds.BodyPartExamined = "BREAST"
    ds.OrganExposed = "BREAST"
    ds.PositionerType = "MAMMOGRAPHIC"
    ds.DetectorType = "DIRECT"
    ds.BreastImplantPresent = "NO"
    ds.PositionReferenceIndicator = ""
    ds.AcquisitionContextSequence = Sequence([])
    ds.PatientOrientation = ORIENTATION[(laterality, view)]
    spacing = f"{0.07 * 4096 / rows:.4f}"
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.PresentationLUTShape = "INVERSE" if photometric == "MONOCHROME1" else "IDENTITY"
    # Stored values rise with attenuation (log of the transmitted intensity), as "for presentation" MG is written:
    # MONOCHROME2 stores less X-ray intensity as higher values (sign -1), MONOCHROME1 the opposite (+1).
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = -1 if photometric == "MONOCHROME2" else 1
    # Identity rescale, so stored values keep their meaning for the window and the pipeline's Modality LUT.
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "US"
    ds.LossyImageCompression = "00"  # every syntax but JPEG Baseline is lossless (set below)
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8 if jpeg else 16, bits, bits - 1
    ds.PixelRepresentation = 0
    _set_voi(ds, voi, bits, photometric)
    if syntax == "explicit":
        ds.PixelData = pixels.astype("<u2").tobytes()
        ds["PixelData"].VR = "OW"
    elif jpeg:
        _write_jpeg(ds, pixels.astype(np.uint8))
    else:
        ds.compress(SYNTAXES[syntax], np.ascontiguousarray(pixels), encoding_plugin=ENCODERS[syntax],
                    generate_instance_uid=False)
    labels = [CLASS_NAMES[label] for label in phantom.labels]
    return SynthImage(ds, boxes.astype(np.float32), labels, phantom.degraded, laterality, view, patient)


def _write_jpeg(ds: Dataset, pixels: np.ndarray) -> None:
    """8-bit pixels as one lossy JPEG Baseline fragment, with the lossy-compression attributes the IOD requires."""
    from PIL import Image

    buffer = BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="JPEG", quality=JPEG_QUALITY)
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = f"{pixels.size / len(buffer.getvalue()):.2f}"
    ds.LossyImageCompressionMethod = "ISO_10918_1"


def synth_study(seed: int, *, images: int = 4, **options: object) -> list[SynthImage]:
    """A study of 1-4 views in hanging order (L CC, R CC, L MLO, R MLO), one patient, one study UID.

    options: any keyword of `synth_image` except index/laterality/view/study_seed.
    """
    if not 1 <= images <= len(VIEWS):
        raise ValueError(f"a study has 1 to {len(VIEWS)} images, got {images}")
    return [
        synth_image(seed, index=index, laterality=side, view=view, study_seed=seed, **options)  # type: ignore[arg-type]
        for index, (side, view) in enumerate(VIEWS[:images])
    ]


def write_study(study: list[SynthImage], folder: Path) -> Path:
    """Write each image as `<folder>/<index>_<laterality><view>.dcm` and the ground truth as `truth.json`.

    Returns the ground-truth file's path. The truth holds no patient data.
    """
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for index, image in enumerate(study):
        name = f"{index}_{image.laterality}{image.view}.dcm"
        (folder / name).write_bytes(image.to_bytes())
        entries.append({"file": name, **image.truth()})
    truth = folder / "truth.json"
    study_uid = str(study[0].dataset.StudyInstanceUID) if study else ""
    truth.write_text(json.dumps({"study_instance_uid": study_uid, "images": entries}, indent=2) + "\n")
    return truth
