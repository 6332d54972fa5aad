"""Large binary-extension request bodies: received once into one buffer, their tensors read in place.

Why: uvicorn hands a request body over in pieces of at most 256 KB; Starlette keeps every piece and joins them at
the end (one copy of the whole body into fresh memory, the pieces still held), and KServe then copies every BYTES
element out of the joined body (a second copy). For a 4-view uncompressed study (109 MB) that is ~218 MB of
copying into page-faulted memory plus a peak of three bodies (docs/benchmarks.md). Here each piece is copied once,
while it is still in cache, into a buffer of the declared Content-Length; the route sees only the small JSON
header, and `binary_request.decode_binary_request` reads the tensors from this buffer, handing out read-only
memoryviews of it.

The buffer travels in a context variable: the route runs in the middleware's task, so it sees the value the
middleware set, and nothing else does.

Buffers are kept for later requests (`ReceiveBuffers`): writing into freshly mapped memory costs a page fault per
4 KB page, which on the 2-core benchmark machine cost more than the copy itself (docs/benchmarks.md).
"""

from __future__ import annotations

import mmap
import sys
import threading
from contextvars import ContextVar

from starlette.types import Message, Receive

# Smaller bodies (a batch of headlines) take Starlette's path: for them the copies cost nothing and the header-only
# replay would be pure overhead.
WHOLE_BODY_MIN_BYTES = 1 << 20

RECEIVED_BODY: ContextVar[memoryview | None] = ContextVar("duet_received_body", default=None)


class ClientDisconnected(Exception):
    """The client went away before its whole body arrived."""


class ReceiveBuffers:
    """Receive buffers reused between requests, at most `keep_bytes` of them kept while unused.

    A buffer is handed out again only when nothing refers to it any more. Every view of it (a request's tensors,
    numpy arrays over a file's pixels, a decoder reading a codestream) holds a reference to the buffer object, so
    its reference count says whether an earlier request, or a decode thread it left running, still reads it.
    New buffers are anonymous mappings advised to use huge pages, which fault 512 times less often.
    """

    def __init__(self, keep_bytes: int) -> None:
        self.keep_bytes = keep_bytes
        self._kept: list[mmap.mmap] = []
        self._lock = threading.Lock()

    def take(self, length: int) -> mmap.mmap:
        """A writable buffer of at least `length` bytes (max(length, 1): a mapping cannot be empty)."""
        with self._lock:
            for position in range(len(self._kept)):
                # 2: this list's reference and getrefcount's own argument; any view of the buffer adds one.
                if len(self._kept[position]) >= length and sys.getrefcount(self._kept[position]) == 2:
                    return self._kept.pop(position)
        buffer = mmap.mmap(-1, max(length, 1))
        if hasattr(mmap, "MADV_HUGEPAGE"):
            buffer.madvise(mmap.MADV_HUGEPAGE)
        return buffer

    def give_back(self, buffer: mmap.mmap) -> None:
        """Keep `buffer` for a later request, dropping the smallest kept ones beyond `keep_bytes`."""
        with self._lock:
            self._kept.append(buffer)
            self._kept.sort(key=len, reverse=True)
            while self._kept and sum(len(kept) for kept in self._kept) > self.keep_bytes:
                self._kept.pop()  # freed once its last view is gone

    @property
    def kept_bytes(self) -> int:
        with self._lock:
            return sum(len(kept) for kept in self._kept)


async def receive_whole_body(receive: Receive, length: int, buffers: ReceiveBuffers | None = None) -> memoryview:
    """The request body, `length` bytes as declared by Content-Length, as a read-only view of one buffer (taken
    from `buffers` when given: the caller gives it back once the request is answered).

    Fewer bytes than declared is a truncated body (ValueError); the HTTP parser never delivers more than declared.
    """
    buffer = buffers.take(length) if buffers is not None else bytearray(length)
    view = memoryview(buffer)[:length]
    filled = 0
    more_body = True
    while more_body:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        piece = message.get("body", b"")
        if filled + len(piece) > length:
            raise ValueError(f"the body is longer than its Content-Length of {length} bytes")
        view[filled : filled + len(piece)] = piece
        filled += len(piece)
        more_body = message.get("more_body", False)
    if filled != length:
        raise ValueError(f"the body has {filled} bytes; its Content-Length says {length}")
    readonly = view.toreadonly()
    view.release()
    return readonly


def replay(first: Message, receive: Receive) -> Receive:
    """A `receive` that answers `first` once, then whatever the connection says next (a disconnect)."""
    pending: list[Message] = [first]

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replayed
