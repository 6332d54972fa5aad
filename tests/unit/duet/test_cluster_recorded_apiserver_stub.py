"""`duet cluster status` and `duet cluster smoke` against a recorded API-server stub.

No Kubernetes API server can run here, so a real HTTP server on 127.0.0.1 answers the exact endpoints the
`kubernetes` client calls with JSON recorded in the shape KServe 0.15+ and Kubernetes return (InferenceService
list with KServe's status, PodList), honouring the label selectors. The smoke test's ingress is a second stub
that checks what a real transformer would check (Host routing, a v2 request in the binary tensor extension, DICOM
that pydicom can read as MG)
and answers with contract-shaped outputs. Both are mocks of what cannot run here, hence the test names.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from tritonclient.utils import deserialize_bytes_tensor
from typer.testing import CliRunner

cluster = pytest.importorskip("duet.cluster", reason="duet.cluster needs the kubernetes client (dev extra)")
pydicom = pytest.importorskip("pydicom")

NAMESPACE = "duet"
HOSTS = {"duet-mammography": "duet-mammography-duet.example.com", "duet-sentiment": "duet-sentiment-duet.example.com"}


def recorded_isvc(name: str, model: str, *, ready: bool) -> dict:
    """An InferenceService as the API server returns it after KServe reconciled it (Standard mode)."""
    conditions = [
        {"lastTransitionTime": "2026-09-01T10:02:11Z", "status": "True", "type": "IngressReady"},
        {"lastTransitionTime": "2026-09-01T10:02:09Z", "status": "True", "type": "TransformerReady"},
    ]
    if ready:
        conditions += [{"lastTransitionTime": "2026-09-01T10:02:10Z", "status": "True", "type": "PredictorReady"},
                       {"lastTransitionTime": "2026-09-01T10:02:11Z", "status": "True", "type": "Ready"}]
    else:
        conditions += [
            {"lastTransitionTime": "2026-09-01T10:01:40Z", "status": "False", "type": "PredictorReady",
             "reason": "MinimumReplicasUnavailable", "message": "Deployment does not have minimum availability."},
            {"lastTransitionTime": "2026-09-01T10:01:40Z", "status": "False", "type": "Ready",
             "reason": "MinimumReplicasUnavailable", "message": "Deployment does not have minimum availability."}]
    return {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {
            "name": name, "namespace": NAMESPACE, "generation": 1, "resourceVersion": "48211",
            "uid": f"7c1d2e3f-0000-4000-8000-{abs(hash(name)) % 10**12:012d}",
            "creationTimestamp": "2026-09-01T10:00:00Z",
            "labels": {"app.kubernetes.io/instance": "duet", "app.kubernetes.io/managed-by": "Helm",
                       "app.kubernetes.io/name": "duet", "app.kubernetes.io/part-of": "duet",
                       "app.kubernetes.io/version": "0.1.0", "duet/model": model, "helm.sh/chart": "duet-0.1.0"},
            "annotations": {"serving.kserve.io/autoscalerClass": "keda",
                            "serving.kserve.io/deploymentMode": "Standard"},
        },
        "spec": {"predictor": {"minReplicas": 1, "maxReplicas": 4,
                               "model": {"modelFormat": {"name": "triton"}, "runtime": "kserve-tritonserver",
                                         "protocolVersion": "grpc-v2",
                                         "storageUri": "oci://ghcr.io/duet-serving/duet-models:0.1.0"}}},
        "status": {
            "address": {"url": f"http://{name}-transformer.{NAMESPACE}.svc.cluster.local"},
            "components": {"predictor": {"url": f"http://{name}-predictor-{NAMESPACE}.example.com"},
                           "transformer": {"url": f"http://{name}-transformer-{NAMESPACE}.example.com"}},
            "conditions": conditions,
            "deploymentMode": "Standard",
            "modelStatus": {"states": {"activeModelState": "Loaded" if ready else "Pending",
                                       "targetModelState": "Loaded"},
                            "transitionStatus": "UpToDate" if ready else "InProgress"},
            "observedGeneration": 1,
            "url": f"http://{HOSTS[name]}",
        },
    }


def recorded_pod(isvc: str, component: str, index: int, *, ready: bool) -> dict:
    """A Pod of an InferenceService component as the API server returns it (fields trimmed)."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": f"{isvc}-{component}-6d9f7b8c5-{index:05d}", "namespace": NAMESPACE,
            "labels": {"app": f"isvc.{isvc}-{component}", "component": component,
                       "serving.kserve.io/inferenceservice": isvc, "app.kubernetes.io/part-of": "duet",
                       "app.kubernetes.io/component": component},
        },
        "spec": {"containers": [{"name": "kserve-container", "image": "nvcr.io/nvidia/tritonserver:26.09-py3"}]},
        "status": {"phase": "Running" if ready else "Pending",
                   "conditions": [{"type": "PodScheduled", "status": "True"},
                                  {"type": "Ready", "status": "True" if ready else "False"}]},
    }


def selected(obj: dict, selector: str | None) -> bool:
    """Equality-based label selector (the only form the CLI sends)."""
    labels = obj["metadata"].get("labels", {})
    for term in filter(None, (selector or "").split(",")):
        key, value = term.split("=", 1)
        if labels.get(key) != value:
            return False
    return True


@dataclass
class Recording:
    """What the stub serves and what it was asked."""

    isvcs: list[dict]
    pods: list[dict]
    kserve_installed: bool = True
    requests: list[str] = field(default_factory=list)


class JsonHandler(BaseHTTPRequestHandler):
    """A recorded HTTP peer answering JSON, quiet in pytest output."""

    def log_message(self, *args):
        pass

    def reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def make_apiserver_handler(recording: Recording) -> type[BaseHTTPRequestHandler]:
    isvc_path = f"/apis/serving.kserve.io/v1beta1/namespaces/{NAMESPACE}/inferenceservices"
    pod_path = f"/api/v1/namespaces/{NAMESPACE}/pods"

    class Handler(JsonHandler):

        def do_GET(self):
            url = urlsplit(self.path)
            recording.requests.append(self.path)
            selector = parse_qs(url.query).get("labelSelector", [None])[0]
            if url.path == isvc_path and recording.kserve_installed:
                items = [i for i in recording.isvcs if selected(i, selector)]
                self.reply(200, {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceServiceList",
                                 "metadata": {"resourceVersion": "48230"}, "items": items})
            elif url.path == pod_path:
                items = [p for p in recording.pods if selected(p, selector)]
                self.reply(200, {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "48230"},
                                 "items": items})
            else:
                self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                 "message": "the server could not find the requested resource",
                                 "reason": "NotFound", "code": 404})

    return Handler


@pytest.fixture
def serve():
    """Start HTTP servers on 127.0.0.1 ports; shut them all down after the test."""
    servers: list[ThreadingHTTPServer] = []

    def start(handler: type[BaseHTTPRequestHandler]) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def default_recording() -> Recording:
    isvcs = [recorded_isvc("duet-mammography", "mammography", ready=True),
             recorded_isvc("duet-sentiment", "sentiment", ready=True)]
    pods = [recorded_pod("duet-mammography", "predictor", 0, ready=True),
            recorded_pod("duet-mammography", "transformer", 0, ready=True),
            recorded_pod("duet-mammography", "transformer", 1, ready=True),
            recorded_pod("duet-sentiment", "predictor", 0, ready=True),
            recorded_pod("duet-sentiment", "transformer", 0, ready=True)]
    return Recording(isvcs, pods)


def write_kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "stub",
        "clusters": [{"name": "stub", "cluster": {"server": server}}],
        "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub", "namespace": NAMESPACE}}],
        "users": [{"name": "stub", "user": {"token": "recorded"}}],
    }))
    return path


def run_cli(*args: str):
    from duet.cluster import cluster_app

    # Wide enough that rich does not wrap the tables the assertions read.
    return CliRunner().invoke(cluster_app, list(args), env={"COLUMNS": "300"})


# ---- status ---------------------------------------------------------------------------------------------------

def test_cluster_status_all_ready_recorded_apiserver_stub(tmp_path, serve):
    recording = default_recording()
    kubeconfig = write_kubeconfig(tmp_path, serve(make_apiserver_handler(recording)))
    result = run_cli("status", "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 0, result.output
    for expected in ("duet-mammography", "duet-sentiment", "http://duet-mammography-duet.example.com", "2/2",
                     "mammography", "sentiment"):
        assert expected in result.output
    paths = [urlsplit(p) for p in recording.requests]
    isvc_calls = [p for p in paths if p.path.endswith("/inferenceservices")]
    assert parse_qs(isvc_calls[0].query)["labelSelector"] == ["app.kubernetes.io/part-of=duet"]
    pod_selectors = sorted(parse_qs(p.query)["labelSelector"][0] for p in paths if p.path.endswith("/pods"))
    assert pod_selectors == ["serving.kserve.io/inferenceservice=duet-mammography",
                             "serving.kserve.io/inferenceservice=duet-sentiment"]


def test_cluster_status_reports_failing_conditions_and_exits_1_recorded_apiserver_stub(tmp_path, serve):
    recording = default_recording()
    recording.isvcs[1] = recorded_isvc("duet-sentiment", "sentiment", ready=False)
    recording.pods[3] = recorded_pod("duet-sentiment", "predictor", 0, ready=False)
    kubeconfig = write_kubeconfig(tmp_path, serve(make_apiserver_handler(recording)))
    result = run_cli("status", "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 1, result.output
    assert "PredictorReady: MinimumReplicasUnavailable" in result.output
    assert "Deployment does not have minimum availability." in result.output
    assert "0/1" in result.output


def test_cluster_status_component_counts_recorded_apiserver_stub(tmp_path, serve):
    """service_state counts pods per component and readiness from the recorded PodList."""
    from duet.cluster import api_client, inference_services, service_state

    recording = default_recording()
    recording.pods.append(recorded_pod("duet-mammography", "predictor", 1, ready=False))
    kubeconfig = write_kubeconfig(tmp_path, serve(make_apiserver_handler(recording)))
    api = api_client(str(kubeconfig))
    states = {s.name: s for s in (service_state(api, i) for i in inference_services(api, NAMESPACE,
                                                                                     cluster.DEFAULT_SELECTOR))}
    mammo = states["duet-mammography"]
    assert (mammo.pods["predictor"].ready, mammo.pods["predictor"].total) == (1, 2)
    assert (mammo.pods["transformer"].ready, mammo.pods["transformer"].total) == (2, 2)
    assert mammo.ready and mammo.model == "mammography" and mammo.problems == []


def test_cluster_status_nothing_selected_exits_1_recorded_apiserver_stub(tmp_path, serve):
    kubeconfig = write_kubeconfig(tmp_path, serve(make_apiserver_handler(default_recording())))
    result = run_cli("status", "--kubeconfig", str(kubeconfig), "--selector", "app.kubernetes.io/part-of=other")
    assert result.exit_code == 1
    assert "no InferenceService matching" in result.output


def test_cluster_status_without_kserve_says_so_recorded_apiserver_stub(tmp_path, serve):
    recording = default_recording()
    recording.kserve_installed = False
    kubeconfig = write_kubeconfig(tmp_path, serve(make_apiserver_handler(recording)))
    result = run_cli("status", "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 2
    assert "is KServe installed?" in result.output


def test_cluster_status_unreachable_api_server_exits_2(tmp_path):
    """Nothing listens on the port: a clear error, not a traceback."""
    import socket

    with socket.socket() as probe:  # a free port, closed again before the CLI connects
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    kubeconfig = write_kubeconfig(tmp_path, f"http://127.0.0.1:{port}")
    result = run_cli("status", "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 2, result.output
    assert "cannot reach the API server" in result.output


def test_cluster_status_bad_kubeconfig_exits_2(tmp_path):
    result = run_cli("status", "--kubeconfig", str(tmp_path / "missing"))
    assert result.exit_code == 2
    assert "cannot use kubeconfig" in result.output


# ---- smoke ----------------------------------------------------------------------------------------------------

@dataclass
class IngressLog:
    """What reached the stub ingress."""

    hosts: list[str] = field(default_factory=list)
    texts: list[list[str]] = field(default_factory=list)
    studies: list[list[pydicom.Dataset]] = field(default_factory=list)
    fail_model: str | None = None


def contract_response(model: str, outputs: dict[str, tuple[str, list[int], list]]) -> dict:
    return {"model_name": model, "model_version": "0123456789ab", "id": "recorded", "parameters": {},
            "outputs": [{"name": n, "datatype": d, "shape": s, "data": v} for n, (d, s, v) in outputs.items()]}


def make_ingress_handler(log: IngressLog) -> type[BaseHTTPRequestHandler]:
    routes = {host: isvc.removeprefix("duet-") for isvc, host in HOSTS.items()}

    class Handler(JsonHandler):

        def do_POST(self):
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            header_length = int(self.headers.get("Inference-Header-Content-Length", len(raw)))
            body = json.loads(raw[:header_length])
            host = self.headers["Host"]
            log.hosts.append(host)
            model = routes.get(host)
            if model is None or self.path != f"/v2/models/{model}/infer":
                self.reply(404, {"error": f"no route for host {host} path {self.path}"})
                return
            if model == log.fail_model:
                self.reply(503, {"error": "predictor unavailable: Triton at duet-mammography-predictor is not ready"})
                return
            (tensor,) = body["inputs"]
            size = tensor.get("parameters", {}).get("binary_data_size")
            elements = list(deserialize_bytes_tensor(raw[header_length:header_length + size])) if size else []
            expected_input = "text" if model == "sentiment" else "dicom"
            if (tensor["name"], tensor["datatype"], tensor["shape"]) != (expected_input, "BYTES", [len(elements)]) \
                    or header_length + size != len(raw):
                self.reply(400, {"error": f"expected input {expected_input!r} BYTES [n] in the binary extension, "
                                          f"got {tensor['name']!r}"})
                return
            if model == "sentiment":
                texts = [element.decode() for element in elements]
                log.texts.append(texts)
                n = len(texts)
                self.reply(200, contract_response(model, {
                    "probabilities": ("FP32", [n, 3], [0.1, 0.2, 0.7] * n),
                    "label": ("BYTES", [n], ["positive"] * n),
                    "entropy": ("FP32", [n], [0.8018] * n)}))
            else:
                study = [pydicom.dcmread(BytesIO(element)) for element in elements]
                log.studies.append(study)
                n = len(study)
                self.reply(200, contract_response(model, {
                    "boxes": ("FP32", [2, 4], [10.0, 20.0, 60.0, 90.0, 100.0, 120.0, 140.0, 180.0]),
                    "scores": ("FP32", [2], [0.91, 0.42]),
                    "labels": ("BYTES", [2], ["mass_malignant", "calcification"]),
                    "image_index": ("INT32", [2], [0, n - 1]),
                    "quality": ("FP32", [n], [0.97] * n),
                    "risk": ("FP32", [1], [0.63])}))

    return Handler


def test_cluster_smoke_through_ingress_recorded_apiserver_stub(tmp_path, serve):
    log = IngressLog()
    kubeconfig = write_kubeconfig(tmp_path, serve(make_apiserver_handler(default_recording())))
    ingress = serve(make_ingress_handler(log))
    result = run_cli("smoke", "--kubeconfig", str(kubeconfig), "--ingress", ingress)
    assert result.exit_code == 0, result.output
    assert sorted(log.hosts) == sorted(HOSTS.values())
    assert log.texts == [cluster.SMOKE_TEXTS]
    (study,) = log.studies
    assert len(study) == 4
    assert {ds.Modality for ds in study} == {"MG"}
    assert [(ds.ImageLaterality, ds.ViewPosition) for ds in study] == [("L", "CC"), ("R", "CC"), ("L", "MLO"),
                                                                       ("R", "MLO")]
    assert "2 findings, risk 0.630" in result.output
    assert "labels positive, positive" in result.output


def test_cluster_smoke_fails_when_a_model_fails_recorded_apiserver_stub(tmp_path, serve):
    log = IngressLog(fail_model="mammography")
    kubeconfig = write_kubeconfig(tmp_path, serve(make_apiserver_handler(default_recording())))
    result = run_cli("smoke", "--kubeconfig", str(kubeconfig), "--ingress", serve(make_ingress_handler(log)))
    assert result.exit_code == 1
    assert "FAILED" in result.output and "HTTP 503" in result.output
    assert "ok" in result.output  # sentiment still passed


def test_cluster_smoke_without_url_or_ingress_fails_recorded_apiserver_stub(tmp_path, serve):
    recording = default_recording()
    for isvc in recording.isvcs:
        del isvc["status"]["url"]
    kubeconfig = write_kubeconfig(tmp_path, serve(make_apiserver_handler(recording)))
    result = run_cli("smoke", "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 1
    assert "no URL yet" in result.output


# ---- contract checks, on their own ----------------------------------------------------------------------------

def sentiment_body(n: int = 2) -> dict:
    return contract_response("sentiment", {"probabilities": ("FP32", [n, 3], [0.2, 0.3, 0.5] * n),
                                           "label": ("BYTES", [n], ["positive"] * n),
                                           "entropy": ("FP32", [n], [1.0] * n)})


def test_check_sentiment_rejects_answers_that_break_the_contract():
    assert cluster.check_sentiment(sentiment_body(), 2) == "labels positive, positive (version 0123456789ab)"
    unversioned = sentiment_body()
    del unversioned["model_version"]
    with pytest.raises(ValueError, match="no model_version"):
        cluster.check_sentiment(unversioned, 2)
    broken = copy.deepcopy(sentiment_body())
    broken["outputs"][0]["data"][0] = 0.9  # row 0 no longer sums to 1
    with pytest.raises(ValueError, match="sum to"):
        cluster.check_sentiment(broken, 2)
    with pytest.raises(ValueError, match="shape"):
        cluster.check_sentiment(sentiment_body(3), 2)
    missing = sentiment_body()
    missing["outputs"] = missing["outputs"][:1]
    with pytest.raises(ValueError, match="missing output 'label'"):
        cluster.check_sentiment(missing, 2)


def test_check_mammography_rejects_answers_that_break_the_contract():
    def body(image_index: list[int], risk: float, quality_n: int = 2) -> dict:
        m = len(image_index)
        return contract_response("mammography", {
            "boxes": ("FP32", [m, 4], [0.0] * 4 * m), "scores": ("FP32", [m], [0.5] * m),
            "labels": ("BYTES", [m], ["mass_benign"] * m), "image_index": ("INT32", [m], image_index),
            "quality": ("FP32", [quality_n], [0.9] * quality_n), "risk": ("FP32", [1], [risk])})

    assert cluster.check_mammography(body([0, 1], 0.2), 2) == "2 findings, risk 0.200 (version 0123456789ab)"
    assert cluster.check_mammography(body([], 0.0), 2) == "0 findings, risk 0.000 (version 0123456789ab)"
    with pytest.raises(ValueError, match="outside the study"):
        cluster.check_mammography(body([0, 2], 0.2), 2)
    with pytest.raises(ValueError, match="not a probability"):
        cluster.check_mammography(body([0], 1.5), 2)
    with pytest.raises(ValueError, match="quality shape"):
        cluster.check_mammography(body([0], 0.5, quality_n=3), 2)


def test_route_uses_the_ingress_with_the_service_host():
    assert cluster.route("http://duet-sentiment-duet.example.com", "http://10.0.0.5:8080/") == (
        "http://10.0.0.5:8080", "duet-sentiment-duet.example.com")
    assert cluster.route("https://duet-sentiment-duet.example.com/", None) == (
        "https://duet-sentiment-duet.example.com", None)
    with pytest.raises(ValueError, match="no URL yet"):
        cluster.route(None, "http://10.0.0.5:8080")
