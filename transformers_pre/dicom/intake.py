"""Header-only validation of each DICOM file, before any pixel is decoded.

Every rejection is a `DuetError` naming the image index and the problem; messages quote only technical
attributes (Modality, Photometric Interpretation, sizes, UIDs of classes and syntaxes), never patient data.

Checks, by status:

- 413: file larger than `max_file_bytes`, Rows/Columns over their caps, Deflated data inflating past
  `max_inflated_bytes`.
- 400: a preamble holding an executable header (PE `MZ`, ELF, Mach-O, a `#!` script: a DICOM/executable
  polyglot), not DICOM (no Part 10 header and pydicom's `force` reading yields no image dataset), empty file,
  missing Rows/Columns/SOP attributes, BitsStored > BitsAllocated, native pixel data shorter than the header
  declares.
- 400: Window Center/Width that are not numbers (when they are the VOI applied).
- 422: a Window Width the VOI LUT Function does not allow (0, negative), a VOI LUT of other than 8 to 16 bits
  per entry.
- 400: a VOI LUT Descriptor without 3 values, or with fewer data values than it declares.
- 422: Modality not MG, a "for processing" image, a Breast Tomosynthesis image or any multi-frame image (more
  frames than `max_frames`), Photometric Interpretation not MONOCHROME1/2, SamplesPerPixel != 1, BitsAllocated
  not 8/16, unsupported transfer syntax.

Caps are checked on header values, so a header claiming 65535 x 65535 pixels is refused before any allocation.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset, read_preamble
from pydicom.multival import MultiValue
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from ..blob import Blob, open_blob
from ..errors import BadRequest, DuetError, PayloadTooLarge, Unprocessable
from ..settings import DicomSettings
from .decode import check_transfer_syntax

# "For processing" SOP classes (raw detector data, not meant for reading): mammography, DX, intra-oral and
# breast projection X-ray.
FOR_PROCESSING_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.1.2.1", "1.2.840.10008.5.1.4.1.1.1.1.1", "1.2.840.10008.5.1.4.1.1.1.3.1",
    "1.2.840.10008.5.1.4.1.1.13.1.5",
})
# Breast Tomosynthesis Image Storage: a volume of slices, not a 2D view.
TOMOSYNTHESIS_SOP_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.13.1.3"})
REQUIRED = ("SOPClassUID", "SOPInstanceUID", "Rows", "Columns")
# The 128-byte preamble is free for applications, which is how a file can be both DICOM and a program
# (CVE-2019-11687). Nothing a modality writes there starts like an executable.
EXECUTABLE_MAGIC = (b"MZ", b"\x7fELF", b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe",
                    b"\xcf\xfa\xed\xfe", b"#!")


@dataclass(frozen=True)
class ImageHeader:
    """What the intake learnt from one file's header.

    dataset: the header-only dataset (no pixel data). It holds the patient module, which only the SR copies:
        never log it or put its values in a message.
    forced: the file has no Part 10 header and was read with pydicom's `force`.
    """

    index: int
    dataset: Dataset
    transfer_syntax: UID
    forced: bool
    rows: int
    columns: int
    frames: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    photometric: str
    sop_instance_uid: str


def _short(value: object) -> str:
    """A header value quoted in a message: technical attributes only, bounded in length."""
    text = str(value).strip()
    return repr(text if len(text) <= 32 else text[:32] + "...")


def _read_meta(blob: Blob, index: int) -> tuple[Dataset | None, int]:
    """The Part 10 file meta group (only its Transfer Syntax UID, the one attribute the pipeline reads) and the
    offset right after it; (None, 0) when there is no Part 10 header."""
    with open_blob(blob) as fp:
        return _read_meta_from(fp, index)


def _read_meta_from(fp: BinaryIO, index: int) -> tuple[Dataset | None, int]:
    try:
        if read_preamble(fp, False) is None:
            return None, 0
    except InvalidDicomError:
        return None, 0
    try:
        read = read_dataset(fp, is_implicit_VR=False, is_little_endian=True,
                            stop_when=lambda tag, vr, length: tag.group != 2)
        # pydicom converts values lazily, and a corrupt element (found by fuzzing: an unknown VR) would fail at
        # any later access; copying out the one attribute needed confines that to here.
        meta = Dataset()
        syntax = read.get("TransferSyntaxUID")
        if syntax is not None:
            meta.TransferSyntaxUID = UID(str(syntax))
    except Exception:  # noqa: BLE001 - a corrupt meta group can fail anywhere in the reader
        raise BadRequest("the DICOM file meta information (group 0002) is unreadable", image_index=index) from None
    return meta, fp.tell()


def _check_inflated_size(blob: Blob, offset: int, cap: int, index: int) -> None:
    """Inflate a Deflated dataset up to `cap` + 1 bytes without keeping it: 413 when it would grow past `cap`."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    inflated = 0
    try:
        # Chunked so a small bomb never holds more than one chunk of output in memory.
        chunk = inflater.decompress(blob[offset:], 16 * 1024 * 1024)
        while chunk:
            inflated += len(chunk)
            if inflated > cap:
                raise PayloadTooLarge(
                    f"the Deflated dataset inflates to more than {cap} bytes (limit)", image_index=index
                )
            chunk = inflater.decompress(inflater.unconsumed_tail, 16 * 1024 * 1024)
    except zlib.error:
        raise BadRequest("the Deflated dataset is not valid deflate data", image_index=index) from None


def _transfer_syntax(meta: Dataset | None, ds: Dataset, index: int) -> UID:
    if meta is not None and "TransferSyntaxUID" in meta:
        return UID(str(meta.TransferSyntaxUID))
    if meta is not None:
        raise BadRequest("the file meta information has no Transfer Syntax UID", image_index=index)
    implicit, little = ds.original_encoding
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def read_header(blob: Blob, index: int, caps: DicomSettings) -> ImageHeader:
    """Validate one file's header (no pixel decoding) and return what the pipeline needs from it.

    blob: the file as bytes or as a view of the request (read in place, never copied whole)."""
    if len(blob) == 0:
        raise BadRequest("the file is empty", image_index=index)
    if len(blob) > caps.max_file_bytes:
        raise PayloadTooLarge(f"the file has {len(blob)} bytes; the limit is {caps.max_file_bytes}",
                              image_index=index)
    if blob[128:132] == b"DICM" and bytes(blob[:128]).startswith(EXECUTABLE_MAGIC):
        raise BadRequest("the DICOM preamble holds an executable header; refused", image_index=index)
    meta, offset = _read_meta(blob, index)
    if meta is not None and str(meta.get("TransferSyntaxUID", "")) == DeflatedExplicitVRLittleEndian:
        _check_inflated_size(blob, offset, caps.max_inflated_bytes, index)
    forced = meta is None
    try:
        with open_blob(blob) as fp:
            ds = dcmread(fp, stop_before_pixels=True, force=forced)
    except Exception:  # noqa: BLE001 - corrupt files raise many types; none of their text is returned
        raise BadRequest("not a readable DICOM file", image_index=index) from None
    try:
        return _validate(ds, meta, forced, index, caps, len(blob))
    except DuetError:
        raise
    except Exception:  # noqa: BLE001 - found by fuzzing: pydicom converts values lazily, and a corrupt element
        # (an unknown VR, a bad length, an unconvertible value) fails on first access with many types
        # (ValueError, NotImplementedError, ...); none of their text is returned.
        raise BadRequest("not a valid DICOM image: header attributes are missing or malformed",
                         image_index=index) from None


def _first_value(value: object) -> object:
    return value[0] if isinstance(value, (list, tuple, MultiValue)) and len(value) else value


def _check_window(ds: Dataset, index: int) -> None:
    """The window the pipeline will apply (the first one, when there is no usable VOI LUT Sequence) must be
    numbers with a width the VOI LUT Function allows (PS3.3 C.11.2.1.2: at least 1, above 0 for LINEAR_EXACT)."""
    sequence = ds.get("VOILUTSequence")
    if sequence and sequence[0].get("LUTDescriptor") is not None and sequence[0].get("LUTData") is not None:
        _check_voi_lut(sequence[0], index)
        return
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is None or width is None:
        return  # no window: the fallback window over the stored range applies
    try:
        float(_first_value(center))
        width_value = float(_first_value(width))
    except (TypeError, ValueError):
        raise BadRequest(f"Window Center/Width ({_short(_first_value(center))}, {_short(_first_value(width))}) "
                         "are not numbers", image_index=index) from None
    function = str(ds.get("VOILUTFunction", "LINEAR")).strip().upper() or "LINEAR"
    smallest_ok = 0.0 if function == "LINEAR_EXACT" else 1.0
    if width_value < smallest_ok or (function == "LINEAR_EXACT" and width_value == 0):
        raise Unprocessable(f"Window Width {width_value:g} is not valid for VOI LUT Function {function} "
                            f"(must be {'above 0' if function == 'LINEAR_EXACT' else 'at least 1'})",
                            image_index=index)


def _check_voi_lut(item: Dataset, index: int) -> None:
    """The VOI LUT the pipeline will apply: a three-value descriptor (entries, first mapped value, 8 to 16 bits
    per entry; PS3.3 C.11.2.1.1.1) and at least as many data values as entries."""
    descriptor = list(item.LUTDescriptor)
    if len(descriptor) != 3:
        raise BadRequest(f"the VOI LUT Descriptor has {len(descriptor)} values; it needs 3", image_index=index)
    entries, bits = int(descriptor[0]) or 2**16, int(descriptor[2])
    if not 8 <= bits <= 16:
        raise Unprocessable(f"the VOI LUT has {bits} bits per entry; 8 to 16 are allowed", image_index=index)
    data = item.LUTData
    # Entries of more than 8 bits are stored in 16-bit words.
    count = len(data) if isinstance(data, (list, tuple, MultiValue)) else len(bytes(data)) // (1 if bits == 8 else 2)
    if count < entries:
        raise BadRequest(f"the VOI LUT holds {count} entries; its descriptor declares {entries}", image_index=index)


def _validate(
    ds: Dataset, meta: Dataset | None, forced: bool, index: int, caps: DicomSettings, size: int
) -> ImageHeader:
    missing = [keyword for keyword in REQUIRED if ds.get(keyword) in (None, "")]
    if missing:
        what = "not a DICOM image" if forced else "not a valid DICOM image"
        raise BadRequest(f"{what}: missing {', '.join(missing)}", image_index=index)
    modality = str(ds.get("Modality", "")).strip()
    if modality != "MG":
        raise Unprocessable(f"Modality is {_short(modality)}, expected 'MG' (mammography)", image_index=index)
    sop_class = str(ds.SOPClassUID)
    intent = str(ds.get("PresentationIntentType", "")).strip().upper()
    if sop_class in TOMOSYNTHESIS_SOP_CLASSES:
        raise Unprocessable("the image is a Breast Tomosynthesis volume (multi-frame); send the 2D views "
                            "(digital mammography or synthesized 2D)", image_index=index)
    if sop_class in FOR_PROCESSING_SOP_CLASSES or intent == "FOR PROCESSING":
        raise Unprocessable("the image is 'for processing' (raw detector data); send the 'for presentation' image",
                            image_index=index)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise Unprocessable(f"Photometric Interpretation {_short(photometric)} is not supported "
                            "(MONOCHROME1 or MONOCHROME2)", image_index=index)
    samples = int(ds.get("SamplesPerPixel", 1))
    if samples != 1:
        raise Unprocessable(f"SamplesPerPixel is {samples}; a mammogram has 1", image_index=index)
    bits_allocated = int(ds.get("BitsAllocated", 0))
    bits_stored = int(ds.get("BitsStored", bits_allocated))
    if bits_allocated not in (8, 16):
        raise Unprocessable(f"BitsAllocated {bits_allocated} is not supported (8 or 16)", image_index=index)
    if not 1 <= bits_stored <= bits_allocated:
        raise BadRequest(f"BitsStored {bits_stored} is not within 1..BitsAllocated ({bits_allocated})",
                         image_index=index)
    rows, columns = int(ds.Rows), int(ds.Columns)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if rows < 1 or columns < 1 or frames < 1:
        raise BadRequest(f"the header declares {rows} x {columns} pixels and {frames} frames", image_index=index)
    if rows > caps.max_rows or columns > caps.max_columns:
        raise PayloadTooLarge(f"the image is {rows} x {columns} pixels (rows x columns); the limit is "
                              f"{caps.max_rows} x {caps.max_columns}", image_index=index)
    if frames > caps.max_frames:
        raise Unprocessable(f"the image is multi-frame ({frames} frames, e.g. tomosynthesis); send single-frame "
                            "2D views", image_index=index)
    _check_window(ds, index)
    transfer_syntax = check_transfer_syntax(_transfer_syntax(meta, ds, index), index)
    if not transfer_syntax.is_compressed and not transfer_syntax.is_deflated:
        # Native pixels: the file must at least hold one frame, checked before anything is allocated.
        frame_bytes = rows * columns * bits_allocated // 8
        if size < frame_bytes:
            raise BadRequest(f"the file has {size} bytes, fewer than one {rows} x {columns} frame of "
                             f"{bits_allocated}-bit pixels needs", image_index=index)
    return ImageHeader(
        index=index,
        dataset=ds,
        transfer_syntax=transfer_syntax,
        forced=forced,
        rows=rows,
        columns=columns,
        frames=frames,
        bits_allocated=bits_allocated,
        bits_stored=bits_stored,
        signed=int(ds.get("PixelRepresentation", 0)) == 1,
        photometric=photometric,
        sop_instance_uid=str(ds.SOPInstanceUID),
    )
