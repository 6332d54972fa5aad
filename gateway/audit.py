"""JSON logs and audit events: one per association, study and export. No patient data: AE titles, addresses,
counts and states only; UIDs appear as a short one-way hash (`uid_key`) so events about one study can be
joined."""

from __future__ import annotations

import json
import logging
import time

from .spool import uid_key

AUDIT = logging.getLogger("duet.gateway.audit")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # pynetdicom logs every PDU and dataset summary at INFO/DEBUG (the latter may hold patient attributes).
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def event(category: str, message: str, /, **fields: object) -> None:
    """One audit event; `fields` must hold no patient data (pass UIDs through `study_ref`)."""
    AUDIT.info(message, extra={"fields": {"audit": category, **fields}})


def study_ref(study_uid: str) -> str:
    return uid_key(study_uid)
