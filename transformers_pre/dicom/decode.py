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

Every plugin is named explicitly (`decoding_plugin`), so an extra package in the environment (Pillow can decode
JPEG 2000, for example) never changes which code decodes a mammogram.
"""

from __future__ import annotations

from io import BytesIO

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
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
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from ..errors import BadRequest, Unprocessable
from ..metrics import DECODED_IMAGES

# Transfer syntax -> the pydicom decoding plugin pinned for it ("" = pydicom's own native decoder).
DECODING_PLUGINS: dict[UID, str] = {
    ImplicitVRLittleEndian: "",
    ExplicitVRLittleEndian: "",
    ExplicitVRBigEndian: "",
    DeflatedExplicitVRLittleEndian: "",
    RLELossless: "pylibjpeg",
    JPEGLSLossless: "pyjpegls",
    JPEGLSNearLossless: "pyjpegls",
    JPEG2000Lossless: "pylibjpeg",
    JPEG2000: "pylibjpeg",
    HTJ2KLossless: "pylibjpeg",
    HTJ2KLosslessRPCL: "pylibjpeg",
    HTJ2K: "pylibjpeg",
}


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


def decode_pixels(blob: bytes, transfer_syntax: UID, index: int, *, forced: bool = False) -> np.ndarray:
    """The first frame's stored values [Rows, Columns] (uint8/int8/uint16/int16 as pydicom decodes them).

    blob: the whole DICOM file, already validated by the header-only intake.
    forced: the file has no Part 10 header and was accepted by pydicom's `force` reading; its transfer syntax
        (one of the uncompressed ones) was inferred by the intake.
    """
    try:
        ds = dcmread(BytesIO(blob), force=forced)
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
    DECODED_IMAGES.labels(syntax_name(transfer_syntax)).inc()
    return pixels
