"""The outbox: sends a stored result (the SR, or the Secondary Capture) to one destination.

C-STORE SCU with pynetdicom to `AE@host:port`, STOW-RS with dicomweb-client to a DICOMweb base URL. The bytes
come from the spool, so every redelivery carries the same SOP Instance UID: a destination that got it before
keeps one copy. A send that raises or answers a failure status is an error; the scheduler retries it with
backoff.
"""

from __future__ import annotations

from pathlib import Path

from dicomweb_client.api import DICOMwebClient
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from .settings import Destination
from .tcp import send_without_delay

# C-STORE statuses that mean stored: success and the three warnings (coercion, elements discarded, mismatch).
STORED = frozenset({0x0000, 0xB000, 0xB006, 0xB007})


class ExportError(Exception):
    """The destination did not store the object; the message says why (no patient data)."""


def send(destination: Destination, path: Path, calling_ae: str, timeout_s: float = 60.0) -> None:
    if destination.is_dicomweb:
        _stow(destination.text, path, timeout_s)
    else:
        _c_store(destination, path, calling_ae, timeout_s)


def _c_store(destination: Destination, path: Path, calling_ae: str, timeout_s: float) -> None:
    dataset = dcmread(path)
    title, host, port = destination.dimse_address()
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.maximum_pdu_size = 4 * 1024 * 1024
    syntaxes = list(
        dict.fromkeys([dataset.file_meta.TransferSyntaxUID, ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    )
    ae.add_requested_context(dataset.SOPClassUID, syntaxes)
    association = ae.associate(host, port, ae_title=title)
    if not association.is_established:
        reason = "rejected" if association.is_rejected else "aborted" if association.is_aborted else "failed"
        raise ExportError(f"association with {title}@{host}:{port} {reason}")
    send_without_delay(association)
    try:
        status = association.send_c_store(dataset)
    finally:
        association.release()
    code = getattr(status, "Status", None)
    if code is None:
        raise ExportError(f"no C-STORE response from {title}@{host}:{port}")
    if code not in STORED:
        raise ExportError(f"{title}@{host}:{port} answered C-STORE status 0x{code:04X}")


def _stow(url: str, path: Path, timeout_s: float) -> None:
    client = DICOMwebClient(url)
    try:
        response = client.store_instances([dcmread(path)])
    except Exception as error:  # noqa: BLE001 -- requests and dicomweb-client errors: all are retried
        raise ExportError(f"STOW-RS to {url} failed: {type(error).__name__}: {str(error)[:200]}") from None
    failed = response.get("FailedSOPSequence") if response is not None else None
    if failed:
        raise ExportError(
            f"STOW-RS to {url}: the object is in the FailedSOPSequence "
            f"(reason {failed[0].get('FailureReason', '?')})"
        )
