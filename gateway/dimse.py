"""The DIMSE side: a pynetdicom AE answering C-ECHO and C-STORE (SCP) on the plain port and, when configured,
a TLS port.

Negotiation accepts Verification and Digital Mammography X-Ray Image Storage - For Presentation in every
transfer syntax the transformer decodes; every other SOP class or syntax is refused there, per presentation
context. The calling AE title (and, for `AE@host` entries, the peer's address) must be on the allow-list, or
the association is rejected (calling AE title not recognised). Past MAX_ASSOCIATIONS an association is
rejected (local limit exceeded). An instance past the study size limit or the spool quota gets status 0xA700
(out of resources).
"""

from __future__ import annotations

import logging
import ssl
import tempfile
import threading

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
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
from pynetdicom import AE, evt
from pynetdicom import _config as pynetdicom_config
from pynetdicom.sop_class import DigitalMammographyXRayImageStorageForPresentation, Verification
from pynetdicom.transport import ThreadedAssociationServer

from . import audit, metrics
from .settings import GatewaySettings
from .spool import Spool, SpoolFull
from .tcp import send_without_delay

LOG = logging.getLogger("duet.gateway.dimse")

# The transfer syntaxes the mammography transformer decodes (transformers_pre/dicom/decode.py); a unit test
# keeps the two lists equal.
TRANSFER_SYNTAXES = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
    RLELossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    HTJ2K,
)
# The transformer refuses "for processing" images and Breast Tomosynthesis volumes, so they are not accepted.
STORAGE_SOP_CLASSES = (DigitalMammographyXRayImageStorageForPresentation,)
MAX_PDU_BYTES = 4 * 1024 * 1024
# C-STORE failure statuses (PS3.4 Annex B.2.3).
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000


def _failure(status: int, comment: str) -> Dataset:
    answer = Dataset()
    answer.Status = status
    answer.ErrorComment = comment[:64]
    return answer


class DimseServer:
    """The C-ECHO/C-STORE SCP over `spool`; start() opens the listeners, stop() closes them."""

    def __init__(
        self, settings: GatewaySettings, spool: Spool, on_stored: threading.Event | None = None
    ) -> None:
        self.settings = settings
        self.spool = spool
        self.on_stored = on_stored
        self.ae = AE(ae_title=settings.ae_title)
        self.ae.maximum_associations = settings.max_associations
        # Large P-DATA PDUs: a 27 MB mammogram in 16 KB PDUs (pynetdicom's default) costs ~1700 PDUs of Python
        # parsing; a sender may always use smaller ones.
        self.ae.maximum_pdu_size = MAX_PDU_BYTES
        self.ae.require_called_aet = True
        self.ae.add_supported_context(Verification)
        for sop_class in STORAGE_SOP_CLASSES:
            self.ae.add_supported_context(sop_class, list(TRANSFER_SYNTAXES))
        self.servers: list[ThreadedAssociationServer] = []
        # Received data sets go to a file in the spool's file system as they arrive, not to memory: an instance
        # of any size costs disk, never RAM, and is then moved into place. pynetdicom names the file with the
        # process-wide temporary folder; this process is the gateway, so that folder is the spool's.
        pynetdicom_config.STORE_RECV_CHUNKED_DATASET = True
        tempfile.tempdir = str(spool.incoming)
        self._open: set[int] = set()
        self._lock = threading.Lock()

    def handlers(self) -> list[tuple]:
        return [
            (evt.EVT_REQUESTED, self._requested),
            (evt.EVT_ESTABLISHED, self._established),
            (evt.EVT_RELEASED, self._closed),
            (evt.EVT_ABORTED, self._closed),
            (evt.EVT_REJECTED, self._rejected),
            (evt.EVT_C_ECHO, lambda event: 0x0000),
            (evt.EVT_C_STORE, self._store),
        ]

    def start(self) -> None:
        host = self.settings.host
        self.servers.append(
            self.ae.start_server((host, self.settings.port), block=False, evt_handlers=self.handlers())
        )
        if self.settings.tls_port is not None:
            self.servers.append(
                self.ae.start_server(
                    (host, self.settings.tls_port),
                    block=False,
                    evt_handlers=self.handlers(),
                    ssl_context=self.tls_context(),
                )
            )

    def tls_context(self) -> ssl.SSLContext:
        settings = self.settings
        if not settings.tls_cert_file or not settings.tls_key_file:
            raise ValueError(
                "DUET_GATEWAY_TLS_PORT needs DUET_GATEWAY_TLS_CERT_FILE and DUET_GATEWAY_TLS_KEY_FILE"
            )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
        if settings.tls_ca_file:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(settings.tls_ca_file)
        return context

    @property
    def ports(self) -> list[int]:
        return [server.server_address[1] for server in self.servers]

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
        self.servers.clear()

    # --- event handlers ----------------------------------------------------------------------------
    def _requested(self, event: evt.Event) -> None:
        calling = event.assoc.requestor.primitive.calling_ae_title.strip()
        address = event.assoc.requestor.address
        if not self.settings.admits(calling, address):
            metrics.ASSOCIATIONS.labels("rejected").inc()
            audit.event(
                "association",
                "association rejected: calling AE title not on the allow-list",
                calling_ae=calling,
                peer=address,
                outcome="rejected",
            )
            # Rejected permanent, by the service user: calling AE title not recognised (PS3.8 9.3.4).
            event.assoc.acse.send_reject(0x01, 0x01, 0x03)
            event.assoc.kill()

    def _established(self, event: evt.Event) -> None:
        send_without_delay(event.assoc)
        with self._lock:
            self._open.add(id(event.assoc))
        metrics.ASSOCIATIONS.labels("accepted").inc()
        metrics.ASSOCIATIONS_ACTIVE.inc()
        audit.event(
            "association",
            "association accepted",
            calling_ae=event.assoc.requestor.ae_title.strip(),
            peer=event.assoc.requestor.address,
            outcome="accepted",
        )

    def _closed(self, event: evt.Event) -> None:
        # Released or aborted: only associations that were established count (a rejected one may abort too).
        with self._lock:
            if id(event.assoc) not in self._open:
                return
            self._open.discard(id(event.assoc))
        metrics.ASSOCIATIONS_ACTIVE.dec()

    def _rejected(self, event: evt.Event) -> None:
        # pynetdicom's own rejections (association limit, called AE title); the allow-list counts its own.
        if event.assoc.requestor.primitive is not None:
            calling = event.assoc.requestor.primitive.calling_ae_title.strip()
            if self.settings.admits(calling, event.assoc.requestor.address):
                metrics.ASSOCIATIONS.labels("rejected").inc()
                audit.event(
                    "association",
                    "association rejected (association limit or called AE title)",
                    calling_ae=calling,
                    peer=event.assoc.requestor.address,
                    outcome="rejected",
                )

    def _store(self, event: evt.Event) -> int | Dataset:
        try:
            incoming = event.dataset_path
            dataset = dcmread(incoming, stop_before_pixels=True)
            study_uid = str(dataset.get("StudyInstanceUID", "")).strip()
            sop_uid = str(dataset.get("SOPInstanceUID", "")).strip()
            laterality = str(dataset.get("ImageLaterality", dataset.get("Laterality", ""))).strip().upper()
            view = str(dataset.get("ViewPosition", "")).strip().upper()
        except Exception as error:  # noqa: BLE001 -- pydicom raises many types on a malformed dataset
            metrics.REFUSED.labels("unreadable").inc()
            return _failure(CANNOT_UNDERSTAND, f"dataset cannot be read: {type(error).__name__}")
        if not study_uid or not sop_uid:
            metrics.REFUSED.labels("missing_uid").inc()
            return _failure(CANNOT_UNDERSTAND, "no Study Instance UID or SOP Instance UID")
        try:
            received = self.spool.store_instance(
                event.assoc.acceptor.ae_title.strip(),
                study_uid,
                sop_uid,
                incoming,
                laterality,
                view,
            )
        except SpoolFull as full:
            metrics.REFUSED.labels("out_of_resources").inc()
            LOG.warning("instance refused: %s", full)
            return _failure(OUT_OF_RESOURCES, str(full))
        except OSError as error:
            metrics.REFUSED.labels("spool_error").inc()
            LOG.error("instance not stored: spool write failed (%s)", type(error).__name__)
            return _failure(OUT_OF_RESOURCES, "the spool cannot be written")
        if received.stored:
            metrics.INSTANCES.labels("dimse").inc()
        if self.on_stored is not None:
            self.on_stored.set()
        return 0x0000
