"""The DICOM gateway as a child of the local stack (`duet up`): its command, environment and endpoints."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
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


def environment(
    config: LocalGatewayConfig,
    host: str,
    inference_url: str,
    run_dir: Path,
    environ: Mapping[str, str] = os.environ,
) -> dict[str, str]:
    """DUET_GATEWAY_* variables: the stack's transformer as the InferenceService, the stack's host and
    ports; the spool in the run folder and, on a loopback-only listener, any calling AE accepted, unless the
    environment already sets them (a spool folder, an allow-list)."""
    defaults = {
        "SPOOL_DIR": str(run_dir / "gateway" / "spool"),
        "ALLOW_ANY_CALLING_AE": "true"
        if host in ("127.0.0.1", "::1", "localhost") and "DUET_GATEWAY_ALLOWED_CALLING_AES" not in environ
        else "false",
    }
    fixed = {
        "AE_TITLE": config.ae_title,
        "HOST": host,
        "PORT": str(config.port),
        "HTTP_PORT": str(config.http_port),
        "INFERENCE_URL": inference_url,
    }
    values = {key: value for key, value in defaults.items() if f"DUET_GATEWAY_{key}" not in environ}
    values.update(fixed)
    values.update(config.settings)
    return {f"DUET_GATEWAY_{key}": value for key, value in values.items()}
