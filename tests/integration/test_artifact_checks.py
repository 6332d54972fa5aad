"""Model artifacts are checked before they are served: a real local stack (and a real `duet up`) refuses a
tampered or truncated ONNX file before any predictor starts, naming the file, and serves the intact artifact; the
transformer process refuses a tampered mounted repository on its own (DUET_VERIFY_ARTIFACTS)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from duet.local.stack import LocalStack, StackConfig, StackError, free_ports
from duet.local.triton import TritonPorts
from duet.paths import ROOT
from transformers_pre.artifacts import manifest, signing

from .conftest import model_repository, require_built

pytestmark = pytest.mark.integration
MODEL = "sentiment/1/model.onnx"


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The built sentiment model as a release: its own repository folder, manifest, and a release key's
    signature."""
    require_built(("sentiment",))
    folder = tmp_path_factory.mktemp("release")
    repository = folder / "model_repository"
    shutil.copytree(model_repository() / "sentiment", repository / "sentiment")
    keys = {"private": folder / "release.key.pem", "public": folder / "release.pub.pem"}
    signing.generate_key_pair(keys["private"], keys["public"])
    manifest.write_manifest(repository)
    signing.sign(repository, keys["private"])
    return {"repository": repository, **keys}


def _copy(release: dict[str, Path], target: Path) -> Path:
    shutil.copytree(release["repository"], target)
    return target


def _flip_one_byte(path: Path) -> None:
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))


def _config(repository: Path, run_dir: Path, public_key: Path, **overrides: object) -> StackConfig:
    http, grpc, t_http, t_grpc, t_metrics = free_ports(5)
    return StackConfig(model_repository=repository, run_dir=run_dir, http_port=http, grpc_port=grpc,
                       triton=TritonPorts(t_http, t_grpc, t_metrics), predictor="onnxruntime",
                       models=("sentiment",), artifact_public_key=public_key, **overrides)


def _nothing_listens(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
    except httpx.ConnectError:
        return True
    return False


def test_a_tampered_onnx_is_refused_before_any_predictor_starts(release: dict[str, Path], tmp_path: Path) -> None:
    repository = _copy(release, tmp_path / "repository")
    _flip_one_byte(repository / MODEL)
    said: list[str] = []
    stack = LocalStack(_config(repository, tmp_path / "run", release["public"]), say=said.append)
    with pytest.raises(StackError) as refused:
        stack.start()
    assert f"{MODEL}: sha256 differs from the manifest" in str(refused.value)
    assert "no predictor started" in str(refused.value)
    assert stack.processes == {}
    assert not (tmp_path / "run" / "predictor.log").exists()
    assert _nothing_listens(f"{stack.triton_http}/v2/health/ready")
    assert _nothing_listens(f"{stack.transformer_http}/v2/models/sentiment/ready")


def test_duet_up_exits_naming_a_truncated_onnx(release: dict[str, Path], tmp_path: Path) -> None:
    repository = _copy(release, tmp_path / "repository")
    model = repository / MODEL
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    http, grpc, t_http, t_grpc, t_metrics = free_ports(5)
    result = subprocess.run(
        [sys.executable, "-m", "duet.cli", "up", "--model=sentiment", "--predictor=onnxruntime",
         f"--http-port={http}", f"--grpc-port={grpc}", f"--triton-http-port={t_http}",
         f"--triton-grpc-port={t_grpc}", f"--triton-metrics-port={t_metrics}", f"--run-dir={tmp_path / 'run'}",
         f"--model-repository={repository}", f"--artifact-public-key={release['public']}"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
        check=False,
    )
    output = (result.stdout + result.stderr).replace("\n", "")
    assert result.returncode != 0
    assert f"{MODEL}: size {model.stat().st_size} bytes" in output
    assert not (tmp_path / "run" / "predictor.log").exists()


def test_a_manifest_rewritten_to_match_a_replaced_model_fails_the_signature(release: dict[str, Path],
                                                                            tmp_path: Path) -> None:
    repository = _copy(release, tmp_path / "repository")
    _flip_one_byte(repository / MODEL)
    manifest.write_manifest(repository)
    stack = LocalStack(_config(repository, tmp_path / "run", release["public"]), say=lambda message: None)
    with pytest.raises(StackError, match=f"{MODEL}: content differs from the signed content"):
        stack.start()
    assert stack.processes == {}


def test_the_intact_artifact_is_verified_by_the_stack_and_the_transformer_and_served(release: dict[str, Path],
                                                                                     tmp_path: Path) -> None:
    events: list[str] = []
    config = _config(release["repository"], tmp_path / "run", release["public"],
                     extra_env={"DUET_VERIFY_ARTIFACTS": "true", "DUET_ARTIFACT_PUBLIC_KEY": str(release["public"])})
    with LocalStack(config, say=events.append, log=lambda level, message: events.append(message)) as stack:
        response = httpx.post(f"{stack.transformer_http}/v2/models/sentiment/infer", timeout=30, json={
            "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["Markets rally"]}]})
        assert response.status_code == 200, response.text
        listed = json.loads((release["repository"] / "artifact.json").read_text())["files"]
        assert f"model artifacts verified: {len(listed)} files" in events
        assert "signature valid" in stack.transformer_log.read_text()


def test_the_transformer_refuses_a_tampered_mounted_repository(release: dict[str, Path], tmp_path: Path) -> None:
    repository = _copy(release, tmp_path / "repository")
    _flip_one_byte(repository / "sentiment" / "tokenizer.json")
    http, grpc, predictor = free_ports(3)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DUET_MODEL_REPOSITORY": str(repository),
           "DUET_VERIFY_ARTIFACTS": "true", "DUET_ARTIFACT_PUBLIC_KEY": str(release["public"]),
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    result = subprocess.run(
        [sys.executable, "-m", "transformers_pre", "--model=sentiment", f"--predictor_host=127.0.0.1:{predictor}",
         "--predictor_protocol=grpc-v2", f"--http_port={http}", f"--grpc_port={grpc}", "--bind_address=127.0.0.1"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120, check=False,
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "refused, not serving: sentiment/tokenizer.json: sha256 differs" in result.stdout + result.stderr
