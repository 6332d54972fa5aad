"""Structured (JSON) logging for the transformers; messages never carry patient data by construction."""

from __future__ import annotations

import json
import logging
import time
from contextvars import ContextVar
from typing import Any

REQUEST_ID: ContextVar[str | None] = ContextVar("duet_request_id", default=None)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception type, never its locals)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = REQUEST_ID.get()
        if request_id:
            entry["request_id"] = request_id
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """A plain line per record; an exception shows as its type only. A traceback quotes the exception's message,
    which may carry values from a request (a DICOM attribute), and so patient data."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatException(self, ei: Any) -> str:
        return f"exception: {ei[0].__name__}" if ei and ei[0] is not None else ""

    def formatStack(self, stack_info: str) -> str:
        return ""


def log_config(log_format: str) -> dict:
    """A logging dictConfig routing duet's, KServe's and uvicorn's loggers to stderr in the chosen format.

    Passed to KServe as its log config too, so REST worker processes it spawns log the same way.
    """
    formatter = (
        {"()": "transformers_pre.logs.JsonFormatter"}
        if log_format == "json"
        else {"()": "transformers_pre.logs.TextFormatter"}
    )
    quiet = {"level": "WARNING"}  # KServe's per-request timing lines duplicate the access log and metrics
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"duet": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "duet", "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": "INFO"},
        "loggers": {
            name: {"handlers": [], "propagate": True, "level": "INFO"}
            for name in ("kserve", "uvicorn", "uvicorn.error", "uvicorn.access", "duet")
        } | {"kserve.trace": {"handlers": [], "propagate": True, **quiet}},
    }
