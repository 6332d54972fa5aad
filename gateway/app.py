"""The gateway process: spool, DIMSE listeners, scheduler and the HTTP app (STOW-RS, status API, metrics)."""

from __future__ import annotations

import os
import threading

from starlette.applications import Starlette
from starlette.routing import Route

from . import audit, metrics
from .dimse import DimseServer
from .scheduler import Scheduler
from .settings import GatewaySettings
from .spool import Spool
from .status_api import healthz, list_studies, metrics_endpoint, readyz, retry_study
from .stowrs import stow_endpoint


class Gateway:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.spool = Spool(settings.spool_dir, settings.max_study_bytes, settings.spool_quota_bytes)
        self.wake = threading.Event()
        self.dimse = DimseServer(settings, self.spool, on_stored=self.wake)
        self.scheduler = Scheduler(settings, self.spool, self.wake)
        metrics.watch_spool(self.spool)

    def start(self) -> None:
        self.dimse.start()
        self.scheduler.start()
        counts = self.spool.study_counts()
        audit.event(
            "gateway",
            "gateway started",
            ae_title=self.settings.ae_title,
            ports=self.dimse.ports,
            http_port=self.settings.http_port,
            resumed={k: v for k, v in counts.items() if v},
        )

    def stop(self) -> None:
        self.dimse.stop()
        self.scheduler.stop()
        self.spool.close()

    def problems(self) -> list[str]:
        problems = []
        if not self.dimse.servers:
            problems.append("DIMSE listener not running")
        if not os.access(self.settings.spool_dir, os.W_OK):
            problems.append("spool directory not writable")
        if self.spool.used_bytes() >= self.spool.quota_bytes:
            problems.append("spool quota reached")
        return problems


def http_app(gateway: Gateway) -> Starlette:
    app = Starlette(
        routes=[
            Route("/studies", stow_endpoint, methods=["POST"]),
            Route("/api/studies", list_studies, methods=["GET"]),
            Route("/api/studies/{study_id}/retry", retry_study, methods=["POST"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ]
    )
    app.state.gateway = gateway
    return app
