"""Modality LUT, VOI LUT, normalisation and MONOCHROME1 inversion folded into ONE lookup table.

The table has one entry per representable stored value (2**BitsAllocated entries, indexed by the stored value's
unsigned bit pattern, so signed pixels need no offset). Its entries are computed by pydicom's own
`apply_modality_lut` and `apply_voi_lut` over that domain of stored values, so every DICOM rule (rescale or
Modality LUT Sequence, LINEAR / LINEAR_EXACT / SIGMOID windows, VOI LUT Sequence with its first mapped value and
clipping) is pydicom's, evaluated once per table entry instead of once per pixel, in float64. Applying the table
is then a single gather over the stored pixels.

Output: uint8, `round(255 * v)` with v in [0, 1] and 0 = dark (air in a mammogram), MONOCHROME1 already inverted.
It differs from the float reference by at most 0.5/255; the detector sees an area-averaged, downscaled copy, so
the 8-bit table costs nothing it could see and halves the time and memory of a float table.

How the VOI output is normalised to [0, 1] (the VOI is chosen as pydicom chooses it: the VOI LUT Sequence when
present, else Window Center/Width, using the first value of multi-valued windows unless told otherwise):
- window: the output range pydicom's windowing maps into ([y_min, y_max] from BitsStored, PixelRepresentation and
  any rescale), read from pydicom itself by windowing -inf and +inf (ordered, as a negative RescaleSlope swaps
  them).
- VOI LUT Sequence: [min, max] of the LUT's entries (files often declare 16-bit entries for a 12-bit LUT, so
  the declared depth is not trusted).
- no VOI in the file (the documented fallback): a LINEAR_EXACT window spanning the modality values actually
  present in the image, [lo, hi] = min/max of the Modality LUT over the stored values between the image's
  smallest and largest stored value; lo maps to 0 and hi to 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut, apply_voi, apply_voi_lut, apply_windowing

from ..errors import Unprocessable

VoiKind = Literal["voi_lut", "window", "fallback"]


@dataclass(frozen=True)
class WindowTable:
    """One lookup table from stored value bit patterns to 8-bit display values (0 = dark)."""

    table: np.ndarray  # uint8 [2**bits_allocated]
    kind: VoiKind


def voi_kind(ds: Dataset) -> VoiKind:
    """Which VOI transform applies, with pydicom's preference: VOI LUT Sequence, then window, then fallback."""
    sequence = ds.get("VOILUTSequence")
    if sequence and sequence[0].get("LUTDescriptor") is not None and sequence[0].get("LUTData") is not None:
        return "voi_lut"
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        return "window"
    return "fallback"


def stored_domain(bits_allocated: int, signed: bool) -> np.ndarray:
    """Every representable stored value, in the order of its unsigned bit pattern (the table's index order).

    Its dtype is the one pydicom decodes pixels into (uint8/int8 or uint16/int16), so pydicom's LUT functions see
    exactly the values and dtype they would see on the pixels themselves.
    """
    if bits_allocated not in (8, 16):
        raise Unprocessable(f"BitsAllocated {bits_allocated} is not supported (8 or 16)")
    unsigned = np.arange(2**bits_allocated, dtype=f"uint{bits_allocated}")
    return unsigned.view(f"int{bits_allocated}") if signed else unsigned


def table_index(stored: np.ndarray) -> np.ndarray:
    """The stored pixels viewed as unsigned bit patterns (no copy), ready to index a `WindowTable`."""
    return stored.view(f"uint{stored.dtype.itemsize * 8}")


def build_table(
    ds: Dataset,
    *,
    stored_range: tuple[int, int] | None = None,
    window_index: int = 0,
) -> WindowTable:
    """The folded Modality + VOI + normalisation (+ MONOCHROME1 inversion) table for `ds`.

    ds: the image's dataset (header attributes only are read).
    stored_range: (smallest, largest) stored value of the image; required only for the fallback window, when
        the file has no VOI (see `voi_kind`).
    window_index: which value of a multi-valued window / which VOI LUT item to use.
    Raises Unprocessable when the file's LUT attributes cannot be applied (e.g. a zero window width).
    """
    kind = voi_kind(ds)
    domain = stored_domain(int(ds.BitsAllocated), int(ds.get("PixelRepresentation", 0)) == 1)
    try:
        modality = apply_modality_lut(domain, ds)
        if kind == "fallback":
            if stored_range is None:
                raise ValueError("the fallback window needs the image's stored value range")
            present = (domain >= stored_range[0]) & (domain <= stored_range[1])
            values = modality[present] if present.any() else modality
            low, high = float(values.min()), float(values.max())
            output = np.asarray(modality, dtype=np.float64)
        elif kind == "window":
            output = np.asarray(apply_voi_lut(modality, ds, index=window_index), dtype=np.float64)
            ends = apply_windowing(np.array([-np.inf, np.inf]), ds, index=window_index)
            # A negative RescaleSlope makes pydicom's y_min exceed its y_max; the range is still between them.
            low, high = float(ends.min()), float(ends.max())
        else:
            output = np.asarray(apply_voi_lut(modality, ds, index=window_index), dtype=np.float64)
            low, high = _voi_lut_range(ds, window_index)
    except (ValueError, TypeError, NotImplementedError, IndexError, KeyError, AttributeError) as error:
        # pydicom's LUT errors describe attributes (a width, a descriptor), never patient data.
        raise Unprocessable(f"the image's Modality/VOI LUT cannot be applied ({kind}): {error}") from None
    span = high - low
    normalised = (output - low) / span if span > 0 else np.zeros_like(output)
    np.clip(normalised, 0.0, 1.0, out=normalised)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        normalised = 1.0 - normalised
    table = np.rint(normalised * 255.0).astype(np.uint8)
    return WindowTable(table=table, kind=kind)


def _voi_lut_range(ds: Dataset, index: int) -> tuple[float, float]:
    """Smallest and largest entry of the VOI LUT Sequence item, read through pydicom's `apply_voi`."""
    descriptor = ds.VOILUTSequence[index].LUTDescriptor
    entries = int(descriptor[0]) or 2**16
    first_mapped = int(descriptor[1])
    # Every entry is reached exactly once by the inputs first_mapped .. first_mapped + entries - 1.
    lut = apply_voi(np.arange(first_mapped, first_mapped + entries, dtype=np.int64), ds, index=index)
    return float(lut.min()), float(lut.max())


def apply_table(stored: np.ndarray, window: WindowTable) -> np.ndarray:
    """Map stored pixels (any shape, uint/int 8 or 16 as decoded) to uint8 display values via the table."""
    return window.table[table_index(stored)]


def canonical_table(window: WindowTable, bits_stored: int, signed: bool) -> WindowTable:
    """The table for raw bit patterns, as native pixel data holds them (read in place, not by pydicom).

    pydicom clears the bits above BitsStored of unsigned pixels and sign-extends signed ones from BitsStored;
    folding that into the table (entry[pattern] = entry[canonical pattern]) costs 2**BitsAllocated lookups once
    instead of one operation per pixel.
    """
    size = window.table.size
    if bits_stored >= size.bit_length() - 1:
        return window
    patterns = np.arange(size, dtype=np.int64)
    values = patterns & ((1 << bits_stored) - 1)
    if signed:
        sign = 1 << (bits_stored - 1)
        values = (values ^ sign) - sign  # sign-extend from BitsStored
    return WindowTable(table=window.table[values & (size - 1)], kind=window.kind)


def canonical_range(stored: np.ndarray, bits_stored: int, signed: bool) -> tuple[int, int] | None:
    """(smallest, largest) stored value of raw pixels, or None when some hold bits above BitsStored (then only
    a per-pixel mask would give the range; callers fall back to pydicom's decoder)."""
    low, high = stored_range(stored)
    if signed:
        limit = 1 << (bits_stored - 1)
        return (low, high) if -limit <= low and high < limit else None
    return (low, high) if high < (1 << bits_stored) else None


def within_bits_stored(stored: np.ndarray, bits_stored: int, signed: bool) -> bool:
    """Whether raw pixels hold no bits above BitsStored (unsigned: one max pass; none when BitsStored fills the
    allocated bits)."""
    if bits_stored >= stored.dtype.itemsize * 8:
        return True
    if signed:
        limit = 1 << (bits_stored - 1)
        return -limit <= int(stored.min()) and int(stored.max()) < limit
    return int(stored.max()) < (1 << bits_stored)


def stored_range(stored: np.ndarray) -> tuple[int, int]:
    """(smallest, largest) stored value of an image, as Python ints (for the fallback window)."""
    return int(stored.min()), int(stored.max())
