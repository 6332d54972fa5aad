"""Structured (JSON) logging for the transformers; messages never carry patient data by construction."""

from __future__ import annotations

import json
import logging
import sys
import time


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception type, never its locals)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(log_format: str) -> None:
    """Route duet's, KServe's and uvicorn's loggers to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("", "kserve", "uvicorn", "uvicorn.error", "uvicorn.access", "duet"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = name == ""
    logging.getLogger().setLevel(logging.INFO)
    # KServe's per-request timing lines duplicate the access log and duet's metrics.
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)
