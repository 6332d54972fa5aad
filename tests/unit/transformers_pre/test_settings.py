"""Settings come from `DUET_*` environment variables once, with nested groups and bounds checked at start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from transformers_pre.settings import Settings


def test_defaults_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DUET_BEARER_TOKEN", "DUET_MAX_REQUEST_BYTES", "DUET_PREDICTOR_RETRIES"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.bearer_token is None
    assert settings.max_request_bytes == 320 * 1024 * 1024
    assert settings.predictor.retries == 2


def test_values_and_nested_groups_come_from_their_prefixes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUET_BEARER_TOKEN", "s3cret")
    monkeypatch.setenv("DUET_RETRY_AFTER_SECONDS", "7")
    monkeypatch.setenv("DUET_PREDICTOR_RETRIES", "5")
    monkeypatch.setenv("DUET_TEXT_MAX_BATCH_TEXTS", "12")
    monkeypatch.setenv("DUET_DICOM_DECODE_WORKERS", "3")
    settings = Settings()
    assert (settings.bearer_token, settings.retry_after_seconds) == ("s3cret", 7)
    assert settings.predictor.retries == 5
    assert settings.text.max_batch_texts == 12
    assert settings.dicom.decode_workers == 3


@pytest.mark.parametrize(("name", "value"), [
    ("DUET_MAX_REQUEST_BYTES", "10"), ("DUET_PREDICTOR_RETRIES", "11"), ("DUET_LOG_FORMAT", "xml"),
    ("DUET_PREDICTOR_PROTOCOL", "http"), ("DUET_DICOM_DECODE_WORKERS", "0"),
])
def test_a_value_out_of_bounds_stops_the_start_naming_the_setting(monkeypatch: pytest.MonkeyPatch, name: str,
                                                                   value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as refused:
        Settings()
    field = name.removeprefix("DUET_").removeprefix("PREDICTOR_").removeprefix("DICOM_").lower()
    assert field in str(refused.value)
