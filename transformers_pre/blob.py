"""A file held in memory, as `bytes` or as a read-only view of the request it came in (a BYTES tensor element,
`codecs.split_bytes_tensor`), opened as a file without copying it.

`io.BytesIO` shares a `bytes` object but copies any other buffer whole: a whole uncompressed mammography view
when the file is a memoryview of the request body. `ViewReader` reads a view in place; a reader such as
pydicom then copies only what it reads (the header elements, and the pixel data where a codec needs it).
"""

from __future__ import annotations

import io
from typing import BinaryIO

Blob = bytes | memoryview


class ViewReader(io.RawIOBase):
    """A read-only, seekable raw file over a memoryview."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view.cast("B")
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        start = min(self._position, len(self._view))
        end = len(self._view) if size is None or size < 0 else min(len(self._view), start + size)
        self._position = end
        return bytes(self._view[start:end])

    def close(self) -> None:
        """Let go of the view: a reader that outlives its read (pydicom keeps it on the dataset) must not keep
        the request's buffer referenced, or the buffer cannot be reused (`body.ReceiveBuffers`)."""
        self._view = memoryview(b"")
        super().close()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._position = base + offset
        return self._position

    def tell(self) -> int:
        return self._position


def open_blob(blob: Blob) -> BinaryIO:
    """A file object over `blob` that does not copy it; close it (or use it in a `with`) once read. (Not
    wrapped in `io.BufferedReader`: pydicom takes any BufferedReader for a file on disk and asks for its
    name.)"""
    if isinstance(blob, bytes):
        return io.BytesIO(blob)
    return ViewReader(blob)  # type: ignore[return-value]
