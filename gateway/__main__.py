"""`python -m gateway`: run the gateway until SIGTERM/Ctrl-C (configuration from DUET_GATEWAY_* variables)."""

from __future__ import annotations

import uvicorn
from pydantic import ValidationError

from .app import Gateway, http_app
from .audit import configure_logging
from .settings import GatewaySettings


def main() -> None:
    configure_logging()
    try:
        settings = GatewaySettings()
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors())
        raise SystemExit(f"invalid DUET_GATEWAY_* setting: {problems}") from None
    gateway = Gateway(settings)
    gateway.start()
    try:
        uvicorn.run(
            http_app(gateway),
            host=settings.http_host or settings.host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
        )
    finally:
        gateway.stop()


if __name__ == "__main__":
    main()
