"""Pixel decoding with pydicom 3 and the pinned, permissively licensed decoding plugins.

Supported transfer syntaxes (anything else is a 422 that names the syntax):
- uncompressed: Implicit VR Little Endian, Explicit VR Little Endian, Explicit VR Big Endian, Deflated Explicit VR
  Little Endian (numpy);
- RLE Lossless (pylibjpeg-rle);
- JPEG-LS Lossless and JPEG-LS Near-Lossless (pyjpegls);
- JPEG 2000 (Lossless Only and lossy) and High-Throughput JPEG 2000 (Lossless, Lossless RPCL and lossy)
  (pylibjpeg-openjpeg).
The JPEG 1992 family (Baseline, Extended, Lossless Process 14) is not supported: its only 12/16-bit decoder for
pydicom, pylibjpeg-libjpeg, is GPLv3.

Every plugin is named explicitly (`decoding_plugin`), so an extra package in the environment never changes which
code decodes a mammogram at full resolution.

Two cheaper paths sit beside pydicom's decoders (`study.prepare_pixels` picks them):
- native little-endian pixel data is read in place: `native_pixels` is a numpy view of the request's bytes (no
  copy, no dcmread of 27 MB), located by `locate_pixel_data`;
- JPEG 2000 / HTJ2K: `encapsulated_frame` extracts the first frame's codestream, and `check_codestream` refuses one
  whose main header disagrees with the DICOM header, or that is larger than the raw frame, before any decoding;
  `jpeg2000.decode_reduced` then decodes only the resolution levels the model needs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import get_frame
from pydicom.pixels import get_decoder
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from ..blob import Blob, open_blob
from ..errors import BadRequest, PayloadTooLarge, Unprocessable
from .jpeg2000 import Codestream, read_codestream

# Transfer syntax -> the pydicom decoding plugin pinned for it ("" = pydicom's own native decoder).
DECODING_PLUGINS: dict[UID, str] = {
    ImplicitVRLittleEndian: "",
    ExplicitVRLittleEndian: "",
    ExplicitVRBigEndian: "",
    DeflatedExplicitVRLittleEndian: "",
    RLELossless: "pylibjpeg",
    JPEGBaseline8Bit: "pillow",
    JPEGLSLossless: "pyjpegls",
    JPEGLSNearLossless: "pyjpegls",
    JPEG2000Lossless: "pylibjpeg",
    JPEG2000: "pylibjpeg",
    HTJ2KLossless: "pylibjpeg",
    HTJ2KLosslessRPCL: "pylibjpeg",
    HTJ2K: "pylibjpeg",
}

JPEG2000_SYNTAXES = frozenset({JPEG2000Lossless, JPEG2000, HTJ2KLossless, HTJ2KLosslessRPCL, HTJ2K})
# Explicit VRs whose length field is 4 bytes after 2 reserved ones (PS3.5 7.1.2); Pixel Data is OB or OW.
LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"SQ", b"UT", b"UC", b"UR"}
UNDEFINED_LENGTH = 0xFFFFFFFF


@dataclass(frozen=True)
class PixelDataElement:
    """Where the Pixel Data value sits in the file: its first byte and its length (None: undefined, i.e.
    encapsulated)."""

    offset: int
    length: int | None


def syntax_name(uid: str) -> str:
    """A transfer syntax's name for messages and metric labels (the UID itself when pydicom does not know it)."""
    name = UID(uid).name
    return name if name and name != uid else f"unknown transfer syntax {uid}"


def check_transfer_syntax(uid: str, index: int) -> UID:
    """The UID when its pixel data can be decoded here; 422 naming the syntax otherwise."""
    if uid not in DECODING_PLUGINS:
        supported = ", ".join(sorted(syntax_name(known) for known in DECODING_PLUGINS))
        raise Unprocessable(
            f"transfer syntax {syntax_name(uid)} ({uid}) is not supported; supported: {supported}",
            image_index=index,
        )
    return UID(uid)


def decode_pixels(blob: Blob, transfer_syntax: UID, index: int, *, forced: bool = False) -> np.ndarray:
    """The first frame's stored values [Rows, Columns] (uint8/int8/uint16/int16 as pydicom decodes them).

    blob: the whole DICOM file, already validated by the header-only intake.
    forced: the file has no Part 10 header and was accepted by pydicom's `force` reading; its transfer syntax
        (one of the uncompressed ones) was inferred by the intake.
    """
    try:
        with open_blob(blob) as fp:
            ds = dcmread(fp, force=forced)
    except Exception as error:  # noqa: BLE001 - pydicom raises many types for corrupt files
        raise BadRequest(f"the file cannot be read with its pixel data ({type(error).__name__})",
                         image_index=index) from None
    if forced and "TransferSyntaxUID" not in getattr(ds, "file_meta", Dataset()):
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = transfer_syntax
    if "PixelData" not in ds:
        raise BadRequest("the file has no Pixel Data (7FE0,0010)", image_index=index)
    try:
        pixels, _ = get_decoder(transfer_syntax).as_array(
            ds, index=0, decoding_plugin=DECODING_PLUGINS[transfer_syntax]
        )
    except Exception as error:  # noqa: BLE001 - codecs raise ValueError, RuntimeError, their own types
        # pydicom's and the codecs' messages describe the pixel stream (lengths, markers), never patient data.
        detail = " ".join(line.strip() for line in str(error).splitlines() if line.strip())[:300]
        detail = detail or type(error).__name__
        raise BadRequest(
            f"pixel data cannot be decoded as {syntax_name(transfer_syntax)}: {detail}", image_index=index
        ) from None
    if pixels.ndim != 2:
        raise Unprocessable(f"decoded pixel data has shape {list(pixels.shape)}, expected one monochrome frame",
                            image_index=index)
    return pixels


def locate_pixel_data(blob: Blob, transfer_syntax: UID, index: int, *, forced: bool = False) -> PixelDataElement:
    """The top-level Pixel Data (7FE0,0010) element of a little-endian, non-deflated file, read with pydicom's
    header parser (which stops right before it) and its element header decoded here; 400 when absent."""
    with open_blob(blob) as stream:
        try:
            dcmread(stream, stop_before_pixels=True, force=forced)
        except Exception:  # noqa: BLE001 - the intake read this header already; a failure here is a corrupt file
            raise BadRequest("the file cannot be read up to its pixel data", image_index=index) from None
        position = stream.tell()
    try:
        group, element = struct.unpack_from("<HH", blob, position)
        if (group, element) != (0x7FE0, 0x0010):
            raise ValueError
        if transfer_syntax == ImplicitVRLittleEndian:
            (length,) = struct.unpack_from("<I", blob, position + 4)
            value = position + 8
        else:
            vr = bytes(blob[position + 4 : position + 6])
            if vr in LONG_VRS:
                (length,) = struct.unpack_from("<I", blob, position + 8)
                value = position + 12
            else:
                (length,) = struct.unpack_from("<H", blob, position + 6)
                value = position + 8
    except (struct.error, ValueError):
        raise BadRequest("the file has no Pixel Data (7FE0,0010)", image_index=index) from None
    if length == UNDEFINED_LENGTH:
        return PixelDataElement(value, None)
    if value + length > len(blob):
        raise BadRequest(f"Pixel Data declares {length} bytes; the file holds {len(blob) - value} after its start",
                         image_index=index)
    return PixelDataElement(value, length)


def native_pixels(blob: Blob, element: PixelDataElement, rows: int, columns: int, bits_allocated: int,
                  signed: bool, index: int) -> np.ndarray:
    """The first frame of native little-endian pixel data as a read-only numpy VIEW of `blob` [rows, columns].

    Values are the stored bit patterns as written (bits above BitsStored included; `window.canonical_table`
    folds them away in the lookup table rather than per pixel).
    """
    itemsize = bits_allocated // 8
    needed = rows * columns * itemsize
    if element.length is None or element.length < needed:
        raise BadRequest(f"Pixel Data holds {element.length} bytes, fewer than one {rows} x {columns} frame of "
                         f"{bits_allocated}-bit pixels", image_index=index)
    dtype = np.dtype(f"<{'i' if signed else 'u'}{itemsize}")
    return np.frombuffer(blob, dtype=dtype, count=rows * columns, offset=element.offset).reshape(rows, columns)


def encapsulated_frame(blob: Blob, element: PixelDataElement, index: int, frames: int = 1) -> Blob:
    """The first frame's codestream of encapsulated pixel data (PS3.5 A.4). With one frame: the items after the
    Basic Offset Table up to the Sequence Delimiter, a view of `blob` when they are one fragment (the usual case:
    no copy of a 10 MB codestream into fresh memory), else joined; with several frames, pydicom's `get_frame`
    finds the first."""
    if element.length is not None:
        raise BadRequest("JPEG 2000 Pixel Data must be encapsulated (undefined length)", image_index=index)
    if frames > 1:
        with open_blob(blob) as stream:
            stream.seek(element.offset)
            try:
                return get_frame(stream, 0, number_of_frames=frames)
            except Exception as error:  # noqa: BLE001 - pydicom raises ValueError/struct.error on broken items
                raise BadRequest(f"the encapsulated Pixel Data is malformed ({type(error).__name__})",
                                 image_index=index) from None
    view = memoryview(blob)
    position, fragments, first = element.offset, [], True
    try:
        while True:
            group, tag_element, length = struct.unpack_from("<HHI", blob, position)
            position += 8
            if (group, tag_element) == (0xFFFE, 0xE0DD):  # Sequence Delimitation Item
                break
            if (group, tag_element) != (0xFFFE, 0xE000) or length == UNDEFINED_LENGTH or position + length > len(blob):
                raise ValueError
            if not first:  # the first item is the Basic Offset Table
                fragments.append(view[position : position + length])
            first = False
            position += length
    except (struct.error, ValueError):
        raise BadRequest(
            "the encapsulated Pixel Data is malformed (items or their lengths)", image_index=index
        ) from None
    if not fragments:
        raise BadRequest("the encapsulated Pixel Data holds no frame", image_index=index)
    return fragments[0].toreadonly() if len(fragments) == 1 else b"".join(fragments)


def check_codestream(frame: Blob, rows: int, columns: int, bits_allocated: int, bits_stored: int, signed: bool,
                     index: int) -> Codestream:
    """The codestream's main header, checked against the DICOM header before anything is decoded.

    413 when the codestream is larger than the raw frame it encodes (Rows x Columns x BitsAllocated / 8): no
    lossless coder needs more, and it bounds what the decoder is handed. 400 when SIZ disagrees with Rows,
    Columns, BitsStored or PixelRepresentation, or holds more than one component.
    """
    raw = rows * columns * bits_allocated // 8
    if len(frame) > raw:
        raise PayloadTooLarge(f"the JPEG 2000 codestream has {len(frame)} bytes, more than the {raw} bytes of the "
                              f"raw {rows} x {columns} frame it encodes", image_index=index)
    codestream = read_codestream(frame, index)
    problems = []
    if (codestream.rows, codestream.columns) != (rows, columns):
        problems.append(f"{codestream.rows} x {codestream.columns} pixels (the header says {rows} x {columns})")
    if codestream.components != 1 or codestream.subsampled:
        problems.append(f"{codestream.components} components (a mammogram has 1)")
    if codestream.precision != bits_stored:
        problems.append(f"{codestream.precision}-bit samples (BitsStored is {bits_stored})")
    if codestream.signed != signed:
        problems.append(f"{'signed' if codestream.signed else 'unsigned'} samples (PixelRepresentation is "
                        f"{int(signed)})")
    if problems:
        raise BadRequest("the JPEG 2000 codestream disagrees with the DICOM header: " + "; ".join(problems),
                         image_index=index)
    return codestream
