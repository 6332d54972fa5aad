"""`duet cluster traffic` against Debian's real `prometheus` binary serving recorded data.

Twenty minutes of a canary rollout are written as OpenMetrics, backfilled into a TSDB with `promtool tsdb
create-blocks-from openmetrics`, and served by a real Prometheus; the command's queries run there. A second
release's series sit in the same TSDB to show the figures are scoped to one release. No cluster runs here: the
traffic split is read from InferenceService objects as KServe reports them (a Knative status, a Standard-mode
canary's annotations), and the command itself falls back to Prometheus alone without API access.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from duet.cluster import cluster_app, traffic_split, version_stats
from duet.local.stack import free_ports

STEP_SECONDS = 15
DURATION_SECONDS = 20 * 60
BUCKETS = (0.25, 0.5, 1.0, 2.5, 5.0)
STABLE = "duet-mammography-transformer-00001"
CANARY = "duet-mammography-transformer-00002"
# (release, version, requests/s, share answered 5xx, share of requests per latency bucket, cumulative)
RECORDED = [
    ("duet", STABLE, 9.0, 0.005, (0.5, 1.0, 1.0, 1.0, 1.0)),
    ("duet", CANARY, 1.0, 0.10, (0.0, 0.0, 0.5, 1.0, 1.0)),
    ("other", STABLE, 50.0, 0.5, (1.0, 1.0, 1.0, 1.0, 1.0)),
]


def openmetrics(end: int) -> str:
    """The recorded rollout: counters and histogram buckets growing at the RECORDED rates up to `end`."""
    times = range(end - DURATION_SECONDS, end + 1, STEP_SECONDS)
    counters, histogram = ["# TYPE duet_requests counter"], ["# TYPE duet_request_duration_seconds histogram"]
    for release, version, rate, errors, cumulative in RECORDED:
        base = f'namespace="duet",duet_release="{release}",model="mammography",revision="{version}"'
        for code_class, share in (("2xx", 1 - errors), ("5xx", errors)):
            counters += [f'duet_requests_total{{{base},code_class="{code_class}"}} '
                         f"{rate * share * (t - times[0]):.3f} {t}" for t in times]
        for le, share in (*zip(BUCKETS, cumulative, strict=True), ("+Inf", 1.0)):
            histogram += [f'duet_request_duration_seconds_bucket{{{base},le="{le}"}} '
                          f"{rate * share * (t - times[0]):.3f} {t}" for t in times]
        histogram += [f"duet_request_duration_seconds_count{{{base}}} {rate * (t - times[0]):.3f} {t}"
                      for t in times]
        histogram += [f"duet_request_duration_seconds_sum{{{base}}} {rate * 0.5 * (t - times[0]):.3f} {t}"
                      for t in times]
    return "\n".join([*counters, *histogram, "# EOF", ""])


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, float]]:
    """(base URL, evaluation time) of a real Prometheus holding the recorded rollout."""
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        pytest.skip("Debian's prometheus package (prometheus, promtool) is not installed")
    work = tmp_path_factory.mktemp("prometheus")
    end = int(time.time()) - 120
    (work / "rollout.om").write_text(openmetrics(end))
    data = work / "data"
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(work / "rollout.om"), str(data)],
                   check=True, capture_output=True, timeout=120)
    (work / "prometheus.yml").write_text("global:\n  scrape_interval: 15s\n")
    (port,) = free_ports(1)
    process = subprocess.Popen(
        ["prometheus", f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={data}",
         f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited: {process.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{base}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("prometheus did not become ready in 60 s")
        yield base, float(end)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_versions_side_by_side_scoped_to_one_release(prometheus):
    base, at = prometheus
    with httpx.Client(timeout=30) as client:
        stats = {s.version: s for s in version_stats(client, base, "duet", "duet", "5m", at)}
    assert set(stats) == {STABLE, CANARY}, "the other release's series must not count"
    assert stats[STABLE].requests_per_second == pytest.approx(9.0, rel=0.02)
    assert stats[CANARY].requests_per_second == pytest.approx(1.0, rel=0.02)
    assert stats[STABLE].error_ratio == pytest.approx(0.005, rel=0.02)
    assert stats[CANARY].error_ratio == pytest.approx(0.10, rel=0.02)
    # histogram_quantile interpolates inside the bucket holding the 99th percentile.
    assert stats[STABLE].p99_seconds == pytest.approx(0.25 + 0.25 * (0.99 - 0.5) / 0.5, rel=0.02)
    assert stats[CANARY].p99_seconds == pytest.approx(1.0 + 1.5 * (0.99 - 0.5) / 0.5, rel=0.02)


def test_the_command_shows_the_table_and_gates_on_the_error_ratio(prometheus, tmp_path: Path):
    base, at = prometheus
    no_cluster = tmp_path / "kubeconfig"
    no_cluster.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    args = ["traffic", "--prometheus", base, "--at", str(at), "--kubeconfig", str(no_cluster)]
    runner = CliRunner()
    shown = runner.invoke(cluster_app, args, env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "traffic split unavailable" in shown.output
    assert STABLE in shown.output and CANARY in shown.output
    gated = runner.invoke(cluster_app, [*args, "--fail-above", "0.05"], env={"COLUMNS": "200"})
    assert gated.exit_code == 1
    assert f"mammography {CANARY}: 5xx ratio 0.1000 above 0.05" in " ".join(gated.output.split())


def test_an_unreachable_prometheus_exits_2(tmp_path: Path):
    (port,) = free_ports(1)
    no_cluster = tmp_path / "kubeconfig"
    no_cluster.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    result = CliRunner().invoke(cluster_app, ["traffic", "--prometheus", f"http://127.0.0.1:{port}",
                                              "--kubeconfig", str(no_cluster)])
    assert result.exit_code == 2
    assert "cannot reach Prometheus" in result.output


def test_the_split_comes_from_knative_status_and_standard_canary_annotations():
    knative = {"metadata": {"name": "duet-mammography"},
               "status": {"components": {"transformer": {"traffic": [
                   {"revisionName": STABLE, "percent": 90, "latestRevision": False},
                   {"revisionName": CANARY, "percent": 10, "latestRevision": True, "tag": "latest"}]}}}}
    standard = {"metadata": {"name": "duet-sentiment-canary",
                             "annotations": {"duet/canary-of": "duet-sentiment", "duet/traffic-percent": "20"}}}
    assert traffic_split([knative, standard]) == {STABLE: 90, CANARY: 10, "duet-sentiment-canary": 20,
                                                  "duet-sentiment": 80}
