"""The optional Secondary Capture: each source image with the findings' boxes burned in, for viewers that show
neither SR nor its overlays (`SECONDARY_CAPTURE=true`).

One RGB SC per image sent to the model (highdicom's SCImage, patient and study copied from the source, a new
series 9002), the image's own VOI applied, boxes drawn in the source's stored pixels: red for a malignant
mass, yellow for a benign one, cyan for a calcification cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from io import BytesIO

import numpy as np
from highdicom import CoordinateSystemNames, PhotometricInterpretationValues
from highdicom.sc import SCImage
from pydicom import dcmread
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

SC_SERIES_NUMBER = 9002
COLOURS = {"malignant_mass": (255, 0, 0), "benign_mass": (255, 255, 0), "calcification": (0, 255, 255)}
OTHER_COLOUR = (255, 0, 255)


def _display(pixels: np.ndarray, dataset) -> np.ndarray:
    """8-bit display values: the modality LUT and the image's first VOI, MONOCHROME1 inverted."""
    values = apply_voi_lut(apply_modality_lut(pixels, dataset), dataset, index=0).astype(np.float32)
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low or 1.0) * 255.0
    if str(dataset.PhotometricInterpretation) == "MONOCHROME1":
        scaled = 255.0 - scaled
    return scaled.astype(np.uint8)


def _draw_box(rgb: np.ndarray, box: Sequence[float], colour: tuple[int, int, int]) -> None:
    rows, columns = rgb.shape[:2]
    thickness = max(2, min(rows, columns) // 300)
    x_min, y_min, x_max, y_max = (round(float(v)) for v in box)
    x_min, x_max = np.clip([x_min, x_max], 0, columns - 1)
    y_min, y_max = np.clip([y_min, y_max], 0, rows - 1)
    rgb[y_min : y_min + thickness, x_min : x_max + 1] = colour
    rgb[max(y_max - thickness + 1, 0) : y_max + 1, x_min : x_max + 1] = colour
    rgb[y_min : y_max + 1, x_min : x_min + thickness] = colour
    rgb[y_min : y_max + 1, max(x_max - thickness + 1, 0) : x_max + 1] = colour


def secondary_captures(
    images: Sequence[bytes], boxes: np.ndarray, labels: Sequence[str], image_index: np.ndarray
) -> dict[str, tuple[str, bytes]]:
    """kind ("sc0", "sc1", ...) -> (SOP Instance UID, Part 10 bytes), one per source image."""
    series_uid = generate_uid()
    captures = {}
    for index, data in enumerate(images):
        source = dcmread(BytesIO(data))
        grey = _display(source.pixel_array, source)
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
        for box, label, where in zip(boxes, labels, image_index):
            if int(where) == index:
                _draw_box(rgb, box, COLOURS.get(label, OTHER_COLOUR))
        orientation = source.get("PatientOrientation")
        capture = SCImage.from_ref_dataset(
            ref_dataset=source,
            pixel_array=rgb,
            photometric_interpretation=PhotometricInterpretationValues.RGB,
            bits_allocated=8,
            coordinate_system=CoordinateSystemNames.PATIENT,
            series_instance_uid=series_uid,
            series_number=SC_SERIES_NUMBER,
            sop_instance_uid=generate_uid(),
            instance_number=index + 1,
            manufacturer="duet",
            # highdicom takes single-letter directions only; the source's own (an MLO's "FR") are set below.
            patient_orientation=("A", "R"),
            laterality=str(source.get("ImageLaterality", "")) or None,
            transfer_syntax_uid=ExplicitVRLittleEndian,
        )
        capture.SeriesDescription = "duet findings (burned in)"
        if orientation and len(orientation) == 2:
            capture.PatientOrientation = list(orientation)
        buffer = BytesIO()
        capture.save_as(buffer, enforce_file_format=True)
        captures[f"sc{index}"] = (str(capture.SOPInstanceUID), buffer.getvalue())
    return captures
