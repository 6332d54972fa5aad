"""Log lines: one JSON object each, tagged with the request id, exceptions by type only."""

from __future__ import annotations

import json
import logging
import logging.config

import pytest

from transformers_pre.logs import REQUEST_ID, JsonFormatter, TextFormatter, log_config


def _record(message: str, exc_info: object = None) -> logging.LogRecord:
    return logging.LogRecord("duet.test", logging.WARNING, __file__, 1, message, (), exc_info)


def test_a_line_is_one_json_object_with_the_request_id() -> None:
    token = REQUEST_ID.set("req-7")
    try:
        line = JsonFormatter().format(_record("request failed: 400 bad"))
    finally:
        REQUEST_ID.reset(token)
    entry = json.loads(line)
    assert entry["message"] == "request failed: 400 bad"
    assert (entry["level"], entry["logger"], entry["request_id"]) == ("warning", "duet.test", "req-7")
    assert entry["time"].endswith("Z")
    assert "request_id" not in json.loads(JsonFormatter().format(_record("outside a request")))


def test_an_exception_is_logged_by_its_type_never_its_message_or_locals() -> None:
    try:
        raise ValueError("PatientName=Jane Doe")
    except ValueError:
        import sys

        line = JsonFormatter().format(_record("decode failed", sys.exc_info()))
        text = TextFormatter().format(_record("decode failed", sys.exc_info()))
    assert json.loads(line)["exception"] == "ValueError"
    assert "Jane" not in line
    # The text format too: a traceback would quote the message.
    assert "exception: ValueError" in text and "Jane" not in text and "Traceback" not in text


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_the_config_routes_duet_kserve_and_uvicorn_to_stderr(log_format: str) -> None:
    config = log_config(log_format)
    assert {"duet", "kserve", "uvicorn", "uvicorn.access"} <= set(config["loggers"])
    assert config["loggers"]["kserve.trace"]["level"] == "WARNING"
    # What dictConfig would build for the handler, without reconfiguring this test process's logging.
    configurator = logging.config.DictConfigurator(config)
    formatter = configurator.configure_formatter(dict(config["formatters"]["duet"]))
    assert isinstance(formatter, JsonFormatter) is (log_format == "json")
