"""A real Prometheus server (Debian's `prometheus` package) scraping the local stack with duet's rules."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ..paths import ROOT

RULES_FILE = ROOT / "charts" / "duet" / "files" / "prometheus-rules.yaml"
TRANSFORMER_JOB = "duet-transformer"
TRITON_JOB = "duet-triton"
GATEWAY_JOB = "duet-gateway"
# Every local series carries this namespace label, so the chart's namespaced queries (KEDA triggers, the
# dashboard) run unchanged against the local stack.
LOCAL_NAMESPACE = "duet-local"
# The Helm release the local stack stands for: the chart's PodMonitors label every series with `duet_release` and
# its PrometheusRule adds it to every recorded series, so the chart's release-scoped queries need it here too.
LOCAL_RELEASE = "duet"
GATEWAY_GROUP = "duet.gateway"


def metric_totals(text: str, families: Iterable[str], **labels: str) -> dict[str, float]:
    """Sum of the samples of each metric family in Prometheus text exposition `text` whose labels include
    `labels` (0.0 for a family that is absent): counters and gauges. Families are named as exposed (Triton's
    counter `nv_inference_count`, whose samples the parser calls `nv_inference_count_total`); a counter's
    `_created` timestamps are not counted."""
    totals = dict.fromkeys(families, 0.0)
    for family in text_string_to_metric_families(text):
        if family.name in totals:
            totals[family.name] += sum(
                sample.value for sample in family.samples
                if sample.name in (family.name, f"{family.name}_total")
                and all(sample.labels.get(key) == value for key, value in labels.items()))
    return totals


class PrometheusUnavailable(RuntimeError):
    """No `prometheus` binary: install Debian's `prometheus` package."""


class PrometheusServer:
    """Prometheus on 127.0.0.1 scraping the transformer and Triton of a LocalStack, evaluating duet's rules."""

    def __init__(self, stack, port: int = 9090, interval_s: float = 5.0, binary: str | None = None) -> None:
        self.stack = stack
        self.port = port
        self.interval_s = interval_s
        self.binary = binary or shutil.which("prometheus")
        self.folder: Path = stack.config.run_dir / "prometheus"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.stack.config.host}:{self.port}"

    def config(self) -> dict:
        interval = f"{self.interval_s:g}s"
        host = self.stack.config.host
        targets = {TRANSFORMER_JOB: self.stack.config.http_port, TRITON_JOB: self.stack.config.triton.metrics}
        if self.stack.runs_gateway:
            # The gateway serves /metrics on its HTTP port; without this job its "down" alert would fire forever.
            targets[GATEWAY_JOB] = self.stack.config.gateway.http_port
        return {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(self.folder / "rules.yml")],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{
                    "targets": [f"{host}:{port}"],
                    "labels": {"namespace": LOCAL_NAMESPACE, "duet_release": LOCAL_RELEASE}}]}
                for job, port in targets.items()
            ],
        }

    def rules(self) -> dict:
        """The chart's rules file as its PrometheusRule template adapts it to one release: recorded series carry
        `duet_release`, and the gateway's group only where a gateway runs."""
        rules = yaml.safe_load(RULES_FILE.read_text())
        groups = [g for g in rules["groups"] if self.stack.runs_gateway or g["name"] != GATEWAY_GROUP]
        for group in groups:
            for rule in group["rules"]:
                if "record" in rule:
                    rule["labels"] = {**rule.get("labels", {}), "duet_release": LOCAL_RELEASE}
        return {"groups": groups}

    def _write_files(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "rules.yml").write_text(yaml.safe_dump(self.rules(), sort_keys=False))
        config_file = self.folder / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        return config_file

    def reload(self) -> None:
        """Scrape and judge what the stack runs now (a gateway started with mammography after a first build)."""
        self._write_files()
        httpx.post(f"{self.url}/-/reload", timeout=10).raise_for_status()

    def start(self, timeout_s: float = 60.0) -> None:
        if not self.binary:
            raise PrometheusUnavailable("no prometheus binary on PATH: apt-get install prometheus")
        config_file = self._write_files()
        log = (self.folder / "prometheus.log").open("ab")
        self.process = subprocess.Popen(
            [self.binary, f"--config.file={config_file}", f"--storage.tsdb.path={self.folder / 'data'}",
             f"--web.listen-address={self.stack.config.host}:{self.port}", "--web.enable-lifecycle"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrometheusUnavailable(f"prometheus exited; see {self.folder / 'prometheus.log'}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise PrometheusUnavailable(f"prometheus not ready after {timeout_s:.0f}s")

    def query(self, promql: str) -> list[dict]:
        """Instant query; the result vector (empty when the expression has no data)."""
        reply = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        reply.raise_for_status()
        return reply.json()["data"]["result"]

    def alerts(self) -> list[dict]:
        reply = httpx.get(f"{self.url}/api/v1/alerts", timeout=10)
        reply.raise_for_status()
        return reply.json()["data"]["alerts"]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
