"""STOW-RS (PS3.18 10.5): `POST /studies` with a multipart/related body of `application/dicom` parts.

One request is one study: every part must carry the first part's Study Instance UID, and the study is complete
when the request has been stored (no quiet period). The answer is a PS3.18 store response in DICOM JSON:
ReferencedSOPSequence for the stored (or already stored) instances, FailedSOPSequence with a FailureReason for
the others; 200 when all were stored, 202 when some were, 409 when none was, 400 for a body that is not
multipart/related, 415 for parts of another type.
"""

from __future__ import annotations

from email.parser import BytesParser
from email.policy import HTTP

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from starlette.requests import Request
from starlette.responses import JSONResponse

from . import metrics
from .dimse import STORAGE_SOP_CLASSES, TRANSFER_SYNTAXES
from .spool import Spool, SpoolFull

DICOM_JSON = "application/dicom+json"
# PS3.18 Table I.2-1 / PS3.4 Annex B failure reasons.
PROCESSING_FAILURE = 0x0110
SOP_CLASS_NOT_SUPPORTED = 0x0122
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122


class StowError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def dicom_parts(content_type: str, body: bytes) -> list[bytes]:
    """The `application/dicom` parts of a multipart/related body (email's MIME parser reads it)."""
    if not content_type.lower().startswith("multipart/related"):
        raise StowError(
            415,
            f'Content-Type must be multipart/related; type="application/dicom", got {content_type[:60]!r}',
        )
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise StowError(400, "the multipart/related body has no parts (check the boundary)")
    parts = []
    for index, part in enumerate(message.iter_parts()):
        if part.get_content_type() != "application/dicom":
            raise StowError(
                415, f"part {index} is {part.get_content_type()}, only application/dicom is stored"
            )
        parts.append(part.get_payload(decode=True) or b"")
    if not parts:
        raise StowError(400, "the multipart/related body has no parts")
    return parts


def _item(sop_class: str, sop_uid: str, failure: int | None = None) -> dict:
    item = {
        "00081150": {"vr": "UI", "Value": [sop_class]} if sop_class else {"vr": "UI"},
        "00081155": {"vr": "UI", "Value": [sop_uid]} if sop_uid else {"vr": "UI"},
    }
    if failure is not None:
        item["00081197"] = {"vr": "US", "Value": [failure]}
    return item


def store_request(
    spool: Spool, called_ae: str, content_type: str, body: bytes
) -> tuple[int, dict, int | None]:
    """Store one STOW-RS request: (HTTP status, store response, study id or None)."""
    stored: list[dict] = []
    failed: list[dict] = []
    study_uid = ""
    study_id = None
    for data in dicom_parts(content_type, body):
        try:
            dataset = dcmread(DicomBytesIO(data), stop_before_pixels=True)
            sop_class = str(dataset.get("SOPClassUID", ""))
            sop_uid = str(dataset.get("SOPInstanceUID", ""))
            syntax = str(dataset.file_meta.get("TransferSyntaxUID", ""))
            this_study = str(dataset.get("StudyInstanceUID", ""))
        except (InvalidDicomError, ValueError, TypeError, EOFError, AttributeError, KeyError):
            metrics.REFUSED.labels("unreadable").inc()
            failed.append(_item("", "", CANNOT_UNDERSTAND))
            continue
        study_uid = study_uid or this_study
        reason = None
        if sop_class not in STORAGE_SOP_CLASSES:
            reason, label = SOP_CLASS_NOT_SUPPORTED, "sop_class"
        elif syntax not in TRANSFER_SYNTAXES:
            reason, label = TRANSFER_SYNTAX_NOT_SUPPORTED, "transfer_syntax"
        elif not sop_uid or not this_study or this_study != study_uid:
            reason, label = CANNOT_UNDERSTAND, "not_one_study"
        if reason is None:
            try:
                received = spool.store_instance(
                    called_ae,
                    study_uid,
                    sop_uid,
                    data,
                    str(dataset.get("ImageLaterality", dataset.get("Laterality", ""))).strip().upper(),
                    str(dataset.get("ViewPosition", "")).strip().upper(),
                )
            except SpoolFull:
                reason, label = OUT_OF_RESOURCES, "out_of_resources"
            except OSError:
                reason, label = PROCESSING_FAILURE, "spool_error"
            else:
                study_id = received.study_id
                if received.stored:
                    metrics.INSTANCES.labels("stow").inc()
                stored.append(_item(sop_class, sop_uid))
                continue
        metrics.REFUSED.labels(label).inc()
        failed.append(_item(sop_class, sop_uid, reason))
    if study_id is not None:
        spool.mark_complete_now(study_id)
    answer: dict = {}
    if failed:
        answer["00081198"] = {"vr": "SQ", "Value": failed}
    if stored:
        answer["00081199"] = {"vr": "SQ", "Value": stored}
    status = 200 if not failed else 202 if stored else 409
    return status, answer, study_id


async def stow_endpoint(request: Request) -> JSONResponse:
    gateway = request.app.state.gateway
    length = int(request.headers.get("content-length") or 0)
    if length > gateway.settings.max_study_bytes:
        return JSONResponse(
            {
                "error": f"the request is larger than the study size limit "
                f"({gateway.settings.max_study_bytes} bytes)"
            },
            status_code=413,
        )
    body = await request.body()
    if len(body) > gateway.settings.max_study_bytes:
        return JSONResponse({"error": "the request is larger than the study size limit"}, status_code=413)
    try:
        status, answer, study_id = await _in_thread(
            store_request,
            gateway.spool,
            gateway.settings.ae_title,
            request.headers.get("content-type", ""),
            body,
        )
    except StowError as error:
        return JSONResponse({"error": str(error)}, status_code=error.status)
    if study_id is not None:
        gateway.wake.set()
    return JSONResponse(answer, status_code=status, media_type=DICOM_JSON)


async def _in_thread(function, *args):
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(function, *args)
