"""The DICOM gateway as a child of the local stack (`duet up`): its command, environment and endpoints."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class LocalGatewayConfig:
    """The gateway beside the local transformers, on the stack's host (127.0.0.1 by default)."""

    ae_title: str = "DUET"
    port: int = 11112
    http_port: int = 8090
    # Any other DUET_GATEWAY_* setting (without the prefix), e.g. {"DESTINATIONS": "PACS@127.0.0.1:11113"}.
    settings: dict[str, str] = field(default_factory=dict)


def command() -> list[str]:
    return [sys.executable, "-m", "gateway"]


def environment(config: LocalGatewayConfig, host: str, inference_url: str, run_dir: Path) -> dict[str, str]:
    """DUET_GATEWAY_* variables: the stack's transformer as the InferenceService, the spool in the run folder;
    calling AEs are open to any AE on a loopback-only listener unless the caller set an allow-list."""
    values = {
        "AE_TITLE": config.ae_title, "HOST": host, "PORT": str(config.port), "HTTP_PORT": str(config.http_port),
        "INFERENCE_URL": inference_url, "SPOOL_DIR": str(run_dir / "gateway" / "spool"),
        "ALLOW_ANY_CALLING_AE": "true" if host in ("127.0.0.1", "::1", "localhost") else "false",
        **config.settings,
    }
    return {f"DUET_GATEWAY_{key}": value for key, value in values.items()}
