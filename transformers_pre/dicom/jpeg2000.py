"""JPEG 2000 and HTJ2K codestreams: their main header, and decoding only the resolution levels a model needs.

A JPEG 2000 codestream is a wavelet code: after r of its decomposition levels are left out, the decoder returns
the LL band of level r, a 2^r times smaller image, and reads only the bytes of the coarser levels. The main
header says how far that can go: SIZ (image and offset on the reference grid, precision, signedness per
component) and COD/COC (number of decomposition levels). Both are read here from the raw bytes (ISO/IEC 15444-1
Annex A) before anything is decoded, so a codestream that disagrees with its DICOM header is refused first.

Geometry of a reduced image (ISO/IEC 15444-1 B.5): at reduction r, with s = 2^r, the image holds the reference
grid positions that are multiples of s inside [XOsiz, Xsiz): columns ceil(Xsiz / s) - ceil(XOsiz / s) (the
"ceiling rule"), and likewise for rows. The LL sample at reduced index u is the low-pass filter centred on
reference position s * (ceil(XOsiz / s) + u), so it stands for stored pixel s * (ceil(XOsiz / s) + u) - XOsiz
(measured: against a block mean of the full decode, the centred s x s block fits best, 3.5 pixels from the block
that starts there at s = 8). `ReducedGrid` carries that mapping to `geometry.ViewTransform`.

Decoders evaluated (December 2026, on this project's pins: numpy < 2, Python 3.11):

- Pillow 13 (bundles OpenJPEG 2.5.4). JPEG 2000: yes. HTJ2K: yes (OpenJPEG >= 2.5). 16-bit / signed: yes /
  yes, as `I;16` scaled to 16 bits and offset by 2^(p-1) when signed (undone here). Reduced-resolution decode:
  yes, up to the codestream's levels (`im.reduce = r` rounds the size instead of the ceiling rule, so
  `_set_reduction` passes r to the decoder with the right size); holds the GIL (it reads the stream through
  Python callbacks).
- pylibjpeg-openjpeg 2.3 (OpenJPEG 2.5). JPEG 2000: yes. HTJ2K: yes. 16-bit / signed: yes / yes.
  Reduced-resolution decode: no (no reduce parameter); holds the GIL.
- imagecodecs 2026.3 (OpenJPEG 2.5.4, OpenJPH 0.26). JPEG 2000: yes. HTJ2K: yes (OpenJPH). 16-bit / signed:
  yes / yes. Reduced-resolution decode: HTJ2K only (`htj2k_decode(skipres=r)`); not usable here: requires
  numpy >= 2.

So Pillow decodes both families at reduced resolution here; pylibjpeg-openjpeg stays the full-resolution decoder
(setting `DUET_DICOM_RESOLUTION_AWARE=false`, and codestreams Pillow cannot take, e.g. several components).
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass

import numpy as np

from ..blob import open_blob
from ..errors import BadRequest

SOC, SIZ, COD, COC, CAP, SOT, SOD, EOC = 0xFF4F, 0xFF51, 0xFF52, 0xFF53, 0xFF50, 0xFF90, 0xFF93, 0xFFD9
# Markers without a length field (ISO/IEC 15444-1 Table A.2): only SOC, SOD, EOC and EPH appear in a main header's
# neighbourhood.
NO_LENGTH = {SOC, SOD, EOC, 0xFF92}


@dataclass(frozen=True)
class Codestream:
    """What the main header of a JPEG 2000 / HTJ2K codestream says (reference grid units = stored pixels)."""

    columns: int  # Xsiz - XOsiz
    rows: int  # Ysiz - YOsiz
    x_offset: int  # XOsiz
    y_offset: int  # YOsiz
    components: int
    precision: int  # bits of the first component
    signed: bool
    subsampled: bool  # any component with XRsiz or YRsiz != 1
    levels: int  # decomposition levels of the first component (COD, or its COC)
    high_throughput: bool  # a CAP marker (Part 15, HTJ2K) is present

    def reduced_shape(self, reduction: int) -> tuple[int, int]:
        """(rows, columns) of the image decoded with `reduction` levels left out (the ceiling rule)."""
        return (_reduced_length(self.y_offset, self.rows, reduction),
                _reduced_length(self.x_offset, self.columns, reduction))

    def grid(self, reduction: int) -> ReducedGrid:
        """Where the pixels of the `reduction` image sit on the stored grid."""
        step = 1 << reduction
        return ReducedGrid(
            step=step,
            origin=(-(-self.x_offset // step) * step - self.x_offset,
                    -(-self.y_offset // step) * step - self.y_offset),
            shape=self.reduced_shape(reduction),
        )


@dataclass(frozen=True)
class ReducedGrid:
    """Decoded pixel (row v, column u) stands for stored pixel (origin_y + step * v, origin_x + step * u).

    In continuous coordinates (pixel k covering [k, k+1)), a decoded x maps to the stored x
    `step * x + origin_x - (step - 1) / 2`: the sample's centre, u + 0.5, lands on the stored pixel centre
    origin_x + step * u + 0.5. step = 1 with origin (0, 0) is the identity (a full-resolution decode).
    """

    step: int = 1
    origin: tuple[int, int] = (0, 0)  # (x, y), stored pixels
    shape: tuple[int, int] | None = None  # (rows, columns) of the decoded image

    @property
    def offset(self) -> tuple[float, float]:
        """(ox, oy) with stored = step * decoded + o, continuous coordinates."""
        shift = (self.step - 1) / 2.0
        return self.origin[0] - shift, self.origin[1] - shift


def _reduced_length(offset: int, length: int, reduction: int) -> int:
    step = 1 << reduction
    return -(-(offset + length) // step) - -(-offset // step)


def read_codestream(frame: bytes | memoryview, index: int) -> Codestream:
    """The main header of a raw codestream (SOC, SIZ first, then markers up to the first SOT); 400 when it is
    not one."""
    data = memoryview(frame)
    try:
        if len(data) < 4 or struct.unpack_from(">HH", data, 0) != (SOC, SIZ):
            raise ValueError("no SOC + SIZ at the start")
        (length, _rsiz, xsiz, ysiz, xosiz, yosiz, _xt, _yt, _xto, _yto,
         components) = struct.unpack_from(">HHIIIIIIIIH", data, 4)
        if components < 1 or length != 38 + 3 * components or xsiz <= xosiz or ysiz <= yosiz:
            raise ValueError("inconsistent SIZ")
        ssiz = [struct.unpack_from(">BBB", data, 4 + 38 + 3 * c) for c in range(components)]
        subsampled = any(x != 1 or y != 1 for _, x, y in ssiz)
        levels, component_levels, high_throughput = None, None, False
        position = 4 + length
        while position + 2 <= len(data):
            (marker,) = struct.unpack_from(">H", data, position)
            if marker in (SOT, SOD, EOC):
                break
            if marker in NO_LENGTH:
                position += 2
                continue
            (segment,) = struct.unpack_from(">H", data, position + 2)
            body = position + 4
            if marker == COD:
                # Scod (1), progression (1), layers (2), MCT (1), then SPcod: levels first.
                levels = data[body + 5]
            elif marker == COC:
                component = struct.unpack_from(">H" if components >= 257 else ">B", data, body)[0]
                if component == 0:
                    component_levels = data[body + (2 if components >= 257 else 1) + 1]
            elif marker == CAP:
                high_throughput = True
            position += 2 + segment
        if levels is None:
            raise ValueError("no COD marker in the main header")
    except (struct.error, IndexError, ValueError) as error:
        raise BadRequest(f"the JPEG 2000 codestream's main header is invalid ({error})", image_index=index) from None
    precision_byte = ssiz[0][0]
    return Codestream(
        columns=xsiz - xosiz, rows=ysiz - yosiz, x_offset=xosiz, y_offset=yosiz, components=components,
        precision=(precision_byte & 0x7F) + 1, signed=bool(precision_byte & 0x80), subsampled=subsampled,
        levels=int(component_levels if component_levels is not None else levels), high_throughput=high_throughput,
    )


def decode_reduced(
    frame: bytes | memoryview, codestream: Codestream, reduction: int, dtype: np.dtype, index: int
) -> np.ndarray:
    """The stored values [rows, columns] of the image with `reduction` levels left out, in `dtype` (the dtype
    pydicom would decode the full image into: uint8/int8/uint16/int16).

    Pillow returns unsigned samples scaled up to its mode's depth (8 for "L", 16 for "I;16") and, for signed
    components, offset by 2^(precision-1); both are undone so values are the stored values, as at full resolution.
    """
    from PIL import Image

    if not 0 <= reduction <= codestream.levels:
        raise ValueError(f"reduction {reduction} outside 0..{codestream.levels}")
    try:
        with warnings.catch_warnings():
            # The decompression-bomb warning: sizes were checked against the DICOM caps already.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with open_blob(frame) as stream, Image.open(stream, formats=["JPEG2000"]) as image:
                if reduction:
                    _set_reduction(image, codestream, reduction)
                image.load()
                mode = image.mode
                decoded = np.asarray(image)
    except Exception as error:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError for bad streams
        raise BadRequest(f"the JPEG 2000 codestream cannot be decoded ({type(error).__name__}: "
                         f"{str(error)[:200]})", image_index=index) from None
    depth = {"L": 8, "I;16": 16, "I;16L": 16, "I;16B": 16}.get(mode)
    if depth is None or decoded.ndim != 2 or decoded.shape != codestream.reduced_shape(reduction):
        raise BadRequest(f"the JPEG 2000 codestream decoded to mode {mode} shape {list(decoded.shape)}, expected "
                         f"one {codestream.precision}-bit component of {list(codestream.reduced_shape(reduction))}",
                         image_index=index)
    shift = depth - codestream.precision
    target = np.dtype(dtype)
    if not codestream.signed:
        values = decoded >> shift if shift else decoded
        return values.astype(target, copy=False)
    values = (decoded >> shift).astype(np.int32) - (1 << (codestream.precision - 1))
    return values.astype(target)


def _set_reduction(image, codestream: Codestream, reduction: int) -> None:
    """Ask Pillow's decoder for `reduction` with the size OpenJPEG will return.

    Pillow's own `im.reduce = r` sizes the result as round(size / 2^r) (Pillow 13, `Jpeg2KImageFile.load`), not
    with the ceiling rule, and ignores the image offset, so for sizes that are not multiples of 2^r the decoder's
    output does not fit ("broken data stream"). The tile's decoder arguments take the reduction directly; the
    size comes from the codestream's SIZ here.
    """
    rows, columns = codestream.reduced_shape(reduction)
    tile = image.tile[0]
    codec, _, offset, (mode, _, layers, *rest) = tile
    fields = (codec, (0, 0, columns, rows), offset, (mode, reduction, layers, *rest))
    image._size = (columns, rows)  # the one size attribute Pillow's ImageFile.load reads
    # Pillow >= 11 keeps tiles as ImageFile._Tile named tuples, older releases as plain tuples, in the same order.
    image.tile = [type(tile)._make(fields) if hasattr(tile, "_make") else fields]
