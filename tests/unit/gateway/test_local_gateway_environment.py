"""The gateway's settings under `duet up`: the stack decides host, ports and inference URL; the environment
may set the spool and the allow-list."""

from __future__ import annotations

from pathlib import Path

from duet.local.gateway import LocalGatewayConfig, environment
from gateway.settings import GatewaySettings


def test_defaults_under_duet_up(monkeypatch) -> None:
    env = environment(
        LocalGatewayConfig(port=11112, http_port=8090),
        "127.0.0.1",
        "http://127.0.0.1:8080",
        Path("/run"),
        environ={},
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = GatewaySettings()
    assert (settings.host, settings.port, settings.http_port) == ("127.0.0.1", 11112, 8090)
    assert settings.inference_url == "http://127.0.0.1:8080"
    assert settings.spool_dir == Path("/run/gateway/spool")
    assert settings.admits("ANY_MODALITY", "127.0.0.1")


def test_an_allow_list_and_spool_from_the_environment_are_kept() -> None:
    environ = {"DUET_GATEWAY_ALLOWED_CALLING_AES": "CT1", "DUET_GATEWAY_SPOOL_DIR": "/data/spool"}
    env = environment(
        LocalGatewayConfig(settings={"DESTINATIONS": "PACS@127.0.0.1:104"}),
        "127.0.0.1",
        "http://127.0.0.1:8080",
        Path("/run"),
        environ=environ,
    )
    assert env["DUET_GATEWAY_ALLOW_ANY_CALLING_AE"] == "false"
    assert "DUET_GATEWAY_SPOOL_DIR" not in env
    assert env["DUET_GATEWAY_DESTINATIONS"] == "PACS@127.0.0.1:104"
    public = environment(LocalGatewayConfig(), "0.0.0.0", "http://x", Path("/run"), environ={})
    assert public["DUET_GATEWAY_ALLOW_ANY_CALLING_AE"] == "false"
