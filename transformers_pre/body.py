"""Large binary-extension request bodies: received once into one buffer, their tensors read in place.

Why: uvicorn hands a request body over in pieces of at most 256 KB; Starlette keeps every piece and joins them at
the end (one copy of the whole body into fresh memory, the pieces still held), and KServe then copies every BYTES
element out of the joined body (a second copy). For a 4-view uncompressed study (109 MB) that is ~218 MB of
copying into page-faulted memory plus a peak of three bodies (docs/benchmarks.md). Here each piece is copied once,
while it is still in cache, into a buffer of the declared Content-Length; the route sees only the small JSON
header, and `BinarySafeDataPlane` reads the tensors from this buffer, handing out read-only memoryviews of it.

The buffer travels in a context variable: the route runs in the middleware's task, so it sees the value the
middleware set, and nothing else does.
"""

from __future__ import annotations

from contextvars import ContextVar

from starlette.types import Message, Receive

# Smaller bodies (a batch of headlines) take Starlette's path: for them the copies cost nothing and the header-only
# replay would be pure overhead.
WHOLE_BODY_MIN_BYTES = 1 << 20

RECEIVED_BODY: ContextVar[memoryview | None] = ContextVar("duet_received_body", default=None)


class ClientDisconnected(Exception):
    """The client went away before its whole body arrived."""


async def receive_whole_body(receive: Receive, length: int) -> memoryview:
    """The request body, `length` bytes as declared by Content-Length, as a read-only view of one buffer.

    Fewer bytes than declared is a truncated body (ValueError); the HTTP parser never delivers more than declared.
    """
    buffer = bytearray(length)
    view = memoryview(buffer)
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
    return view.toreadonly()


def replay(first: Message, receive: Receive) -> Receive:
    """A `receive` that answers `first` once, then whatever the connection says next (a disconnect)."""
    pending: list[Message] = [first]

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replayed
