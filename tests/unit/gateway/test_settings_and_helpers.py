"""Settings parsing, completion rules, image selection, backoff and the negotiated transfer syntaxes."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.assembly import is_complete
from gateway.dimse import TRANSFER_SYNTAXES
from gateway.dispatch import backoff_seconds, retry_after_seconds, select_images
from gateway.settings import GatewaySettings
from gateway.spool import Instance, Study
from transformers_pre.dicom.decode import DECODING_PLUGINS


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUET_GATEWAY_ALLOWED_CALLING_AES", "MODALITY, PACS@10.0.0.5")
    monkeypatch.setenv("DUET_GATEWAY_DESTINATIONS", "PACS@pacs.local:104,https://pacs/dicom-web")
    settings = GatewaySettings()
    assert settings.admits("MODALITY", "192.168.1.1")
    assert settings.admits("PACS", "10.0.0.5")
    assert not settings.admits("PACS", "10.0.0.6")
    assert not settings.admits("STRANGER", "10.0.0.5")
    pacs, web = settings.destination_list
    assert pacs.dimse_address() == ("PACS", "pacs.local", 104)
    assert web.is_dicomweb


def test_an_empty_allow_list_refuses_everyone_unless_any_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not GatewaySettings().admits("ANY", "127.0.0.1")
    monkeypatch.setenv("DUET_GATEWAY_ALLOW_ANY_CALLING_AE", "true")
    assert GatewaySettings().admits("ANY", "127.0.0.1")


def test_a_malformed_destination_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUET_GATEWAY_DESTINATIONS", "pacs.local:104")
    with pytest.raises(ValidationError, match="neither AE@host:port"):
        GatewaySettings()


def test_the_gateway_negotiates_exactly_what_the_transformer_decodes() -> None:
    assert set(TRANSFER_SYNTAXES) == set(DECODING_PLUGINS)


def _instance(laterality: str, view: str, at: float) -> Instance:
    return Instance(f"{laterality}{view}{at}", Path("x"), 1, laterality, view, at)


def _study(last_received: float, complete_now: bool = False) -> Study:
    return Study(1, "DUET", "1", "receiving", 1, complete_now, 0.0, last_received, 0, 0.0, None, None)


def test_completion_rules() -> None:
    two = [_instance("L", "CC", 1), _instance("R", "CC", 2)]
    four = two + [_instance("L", "MLO", 3), _instance("R", "MLO", 4)]
    assert not is_complete(_study(10), two, now=11, stable_seconds=30)
    assert is_complete(_study(10), two, now=41, stable_seconds=30)
    assert is_complete(_study(10), four, now=11, stable_seconds=30)
    assert is_complete(_study(10, complete_now=True), two, now=11, stable_seconds=30)
    assert not is_complete(_study(10, complete_now=True), [], now=100, stable_seconds=30)


def test_image_selection_keeps_the_latest_of_each_view_in_hanging_order() -> None:
    old_lcc, new_lcc = _instance("L", "CC", 1), _instance("L", "CC", 5)
    chosen = select_images(
        [
            _instance("R", "MLO", 2),
            old_lcc,
            _instance("R", "CC", 3),
            new_lcc,
            _instance("L", "MLO", 4),
            _instance("", "", 6),
        ]
    )
    assert [(i.laterality, i.view) for i in chosen] == [("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO")]
    assert chosen[0] is new_lcc


def test_backoff_grows_to_its_cap_and_retry_after_is_read() -> None:
    assert 1 <= backoff_seconds(0, 2, 1800) <= 2
    assert 900 <= backoff_seconds(20, 2, 1800) <= 1800
    assert retry_after_seconds("7") == 7
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0


def test_audit_events_are_json_lines_with_their_fields(caplog: pytest.LogCaptureFixture) -> None:
    import json

    from gateway.audit import JsonFormatter, event

    with caplog.at_level("INFO", logger="duet.gateway.audit"):
        event("export", "export delivered", kind="sr", attempts=1, destination="PACS@h:104")
    entry = json.loads(JsonFormatter().format(caplog.records[-1]))
    assert entry["audit"] == "export" and entry["kind"] == "sr" and entry["attempts"] == 1
