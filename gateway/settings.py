"""The gateway's configuration: environment variables with the prefix DUET_GATEWAY_ (Helm values set them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

GIB = 1024**3


@dataclass(frozen=True)
class CallingAE:
    """One allow-list entry: an AE title, optionally pinned to the peer's IP address."""

    title: str
    host: str | None = None

    def admits(self, title: str, host: str) -> bool:
        return self.title == title and (self.host is None or self.host == host)


@dataclass(frozen=True)
class Destination:
    """Where results go: a C-STORE SCP (`AE@host:port`) or a DICOMweb base URL (STOW-RS)."""

    text: str

    @property
    def is_dicomweb(self) -> bool:
        return self.text.startswith(("http://", "https://"))

    def dimse_address(self) -> tuple[str, str, int]:
        """(AE title, host, port) of a C-STORE destination."""
        title, _, address = self.text.partition("@")
        host, _, port = address.rpartition(":")
        return title, host, int(port)


def _comma_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return list(value or [])  # type: ignore[arg-type]


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DUET_GATEWAY_", extra="ignore")

    ae_title: str = Field("DUET", max_length=16)
    host: str = "0.0.0.0"
    port: int = 11112
    tls_port: int | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_ca_file: Path | None = None  # client certificates are required when set
    allowed_calling_aes: Annotated[list[str], NoDecode] = Field(default_factory=list)
    allow_any_calling_ae: bool = False
    destinations: Annotated[list[str], NoDecode] = Field(default_factory=list)
    stable_seconds: float = 30.0
    spool_dir: Path = Path("/var/lib/duet-gateway")
    http_host: str | None = None  # default: the same address as `host`
    http_port: int = 8090
    inference_url: str = "http://127.0.0.1:8080"
    inference_model: str = "mammography"
    inference_token: str | None = None
    inference_host_header: str | None = None
    inference_timeout_seconds: float = 300.0
    max_associations: int = 10
    max_study_bytes: int = GIB
    spool_quota_bytes: int = 20 * GIB
    secondary_capture: bool = False
    export_max_attempts: int = 50
    export_max_backoff_seconds: float = 1800.0
    dispatch_max_backoff_seconds: float = 300.0
    retry_base_seconds: float = 2.0
    scheduler_interval_seconds: float = 0.1
    dispatch_concurrency: int = 4
    retain_seconds: float = 7 * 24 * 3600.0  # exported studies are forgotten after this
    export_concurrency: int = 4

    @field_validator("allowed_calling_aes", "destinations", mode="before")
    @classmethod
    def _split(cls, value: object) -> list[str]:
        return _comma_list(value)

    @field_validator("destinations")
    @classmethod
    def _check_destinations(cls, value: list[str]) -> list[str]:
        for entry in value:
            destination = Destination(entry)
            if destination.is_dicomweb:
                continue
            try:
                title, host, _ = destination.dimse_address()
            except ValueError:
                raise ValueError(
                    f"destination {entry!r} is neither AE@host:port nor an http(s) URL"
                ) from None
            if not title or not host:
                raise ValueError(f"destination {entry!r} is neither AE@host:port nor an http(s) URL")
        return value

    @property
    def calling_aes(self) -> list[CallingAE]:
        entries = []
        for entry in self.allowed_calling_aes:
            title, _, host = entry.partition("@")
            entries.append(CallingAE(title.strip(), host.strip() or None))
        return entries

    @property
    def destination_list(self) -> list[Destination]:
        return [Destination(entry) for entry in self.destinations]

    def admits(self, calling_ae: str, host: str) -> bool:
        """Whether an association from `calling_ae` at IP `host` is accepted."""
        if self.allow_any_calling_ae:
            return True
        return any(entry.admits(calling_ae.strip(), host) for entry in self.calling_aes)
