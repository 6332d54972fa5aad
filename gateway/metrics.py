"""Prometheus metrics (prefix duet_gateway_); study counts per state are read from the spool when scraped."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .spool import STATES, Spool

REGISTRY = CollectorRegistry()
ASSOCIATIONS = Counter(
    "duet_gateway_associations_total",
    "DIMSE associations requested, by outcome.",
    ["outcome"],
    registry=REGISTRY,
)
ASSOCIATIONS_ACTIVE = Gauge(
    "duet_gateway_associations_active", "DIMSE associations open now.", registry=REGISTRY
)
INSTANCES = Counter(
    "duet_gateway_instances_received_total",
    "Instances stored in the spool, by transport.",
    ["transport"],
    registry=REGISTRY,
)
REFUSED = Counter(
    "duet_gateway_instances_refused_total", "Instances refused, by reason.", ["reason"], registry=REGISTRY
)
EXPORTS = Counter(
    "duet_gateway_exports_total", "Export attempts, by outcome.", ["outcome"], registry=REGISTRY
)
STAGE_SECONDS = Histogram(
    "duet_gateway_stage_seconds",
    "Seconds per stage: assemble (first instance to complete), dispatch (the v2 call), export (one send).",
    ["stage"],
    registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
)
for _label in ("accepted", "rejected"):
    ASSOCIATIONS.labels(_label)
for _label in ("dimse", "stow"):
    INSTANCES.labels(_label)
for _label in ("delivered", "retry", "dead_letter"):
    EXPORTS.labels(_label)


class SpoolCollector(Collector):
    def __init__(self, spool: Spool) -> None:
        self.spool = spool

    def collect(self) -> Iterator[GaugeMetricFamily]:
        studies = GaugeMetricFamily(
            "duet_gateway_studies", "Studies in the spool, by state.", labels=["state"]
        )
        counts = self.spool.study_counts()
        for state in STATES:
            studies.add_metric([state], counts.get(state, 0))
        yield studies
        yield GaugeMetricFamily(
            "duet_gateway_spool_bytes",
            "Bytes of instances and results in the spool.",
            value=self.spool.used_bytes(),
        )
        yield GaugeMetricFamily(
            "duet_gateway_spool_quota_bytes",
            "The spool quota (SPOOL_QUOTA_BYTES).",
            value=self.spool.quota_bytes,
        )


_collectors: list[SpoolCollector] = []


def watch_spool(spool: Spool) -> None:
    """Report `spool` from now on (in place of a spool reported before, for gateways started in one
    process)."""
    while _collectors:
        REGISTRY.unregister(_collectors.pop())
    _collectors.append(SpoolCollector(spool))
    REGISTRY.register(_collectors[0])
