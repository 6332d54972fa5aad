"""TCP settings for the gateway's DICOM associations."""

from __future__ import annotations

import socket

from pynetdicom.association import Association


def send_without_delay(association: Association) -> None:
    """Turn Nagle's algorithm off on an association's socket (pynetdicom leaves it on).

    pynetdicom writes a C-STORE as a command PDU and then the data set's PDUs; with Nagle on, the last small
    segment waits for the peer's delayed ACK (40 ms on Linux), and a C-STORE takes about 90 ms however small
    the object (measured against dcmtk's storescp on loopback).
    """
    transport = association.dul.socket
    if transport is None or transport.socket is None:
        return
    try:
        transport.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        # A connection already gone: the association fails on its own terms.
        pass
