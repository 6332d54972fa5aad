"""The predictor pod's artifact check, run here as the real processes the pod runs: the chart's copy of
check_digests.py (python3) and its entrypoint (sh, with the openssl and tar CLIs for an encrypted repository)
on a good, a tampered and a truncated model repository. The pod itself needs a cluster; its wiring (command,
mounts, termination message) is checked on the rendered InferenceService."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from chart_support import CHART, REPO, objects_of

CHART_CHECKER = CHART / "files" / "check_digests.py"
PYTHON_CHECKER = REPO / "transformers_pre" / "artifacts" / "check_digests.py"
ENTRYPOINT = CHART / "files" / "artifact-entrypoint.sh"
# The openssl invocation `duet models encrypt` produces (and the entrypoint reverses).
OPENSSL_ENC = ["enc", "-aes-256-cbc", "-pbkdf2", "-iter", "200000", "-md", "sha256", "-salt"]


def test_the_chart_ships_a_byte_identical_copy_of_the_checker():
    assert CHART_CHECKER.read_bytes() == PYTHON_CHECKER.read_bytes()


def test_the_config_map_carries_both_files_unchanged(render):
    config_map = next(c for c in objects_of(render(), "ConfigMap") if c["metadata"]["name"] == "duet-artifact-check")
    assert config_map["data"]["check_digests.py"] == CHART_CHECKER.read_text()
    assert config_map["data"]["artifact-entrypoint.sh"] == ENTRYPOINT.read_text()


def write_manifest(root: Path) -> dict:
    files = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name not in ("artifact.json", "model.sig")):
        data = path.read_bytes()
        files[path.relative_to(root).as_posix()] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    manifest = {"schema": "duet.artifact/v1", "artifact_version": "1.4.0", "files": files}
    (root / "artifact.json").write_text(json.dumps(manifest, indent=2))
    return manifest


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """The project's Triton model configurations as a repository, a weights file, and their manifest."""
    root = tmp_path / "repository"
    shutil.copytree(REPO / "models" / "model_repository", root,
                    ignore=shutil.ignore_patterns("*.onnx", "*.plan", "__pycache__"))
    (root / "sentiment" / "1").mkdir(parents=True, exist_ok=True)
    (root / "sentiment" / "1" / "weights.bin").write_bytes(bytes(range(256)) * 64)
    (root / "sentiment" / "labels.txt").write_text("negative\nneutral\npositive\n")
    write_manifest(root)
    return root


def check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHART_CHECKER), str(root)], capture_output=True, text=True,
                          timeout=60, check=False)


def test_a_good_repository_passes(repository: Path):
    result = check(repository)
    count = len(json.loads((repository / "artifact.json").read_text())["files"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"artifact check passed: {count} files"
    (repository / "model.sig").write_text("signature bundle")
    assert check(repository).returncode == 0, "model.sig sits beside the manifest"


def test_a_tampered_file_is_refused(repository: Path):
    weights = repository / "sentiment" / "1" / "weights.bin"
    data = bytearray(weights.read_bytes())
    data[100] ^= 0xFF
    weights.write_bytes(bytes(data))
    result = check(repository)
    assert result.returncode == 1
    # The contract fixes the prefix and the file; the reason's wording is the checker's.
    assert result.stderr.startswith("artifact check failed: sentiment/1/weights.bin: ")
    assert "sha256" in result.stderr


def test_a_truncated_file_is_refused(repository: Path):
    weights = repository / "sentiment" / "1" / "weights.bin"
    weights.write_bytes(weights.read_bytes()[:1000])
    result = check(repository)
    assert result.returncode == 1
    assert result.stderr.startswith("artifact check failed: sentiment/1/weights.bin: ")
    assert "size" in result.stderr


@pytest.mark.parametrize(("change", "relpath"), [
    (lambda root: (root / "sentiment" / "labels.txt").unlink(), "sentiment/labels.txt"),
    (lambda root: (root / "sentiment" / "extra.onnx").write_bytes(b"x"), "sentiment/extra.onnx"),
])
def test_missing_and_unlisted_files_are_refused(repository: Path, change, relpath):
    change(repository)
    result = check(repository)
    assert result.returncode == 1 and result.stderr.startswith(f"artifact check failed: {relpath}: ")


@pytest.mark.parametrize("manifest", [None, "{not json", '{"schema": "other/v1", "files": {}}',
                                      '{"schema": "duet.artifact/v1", "files": {"../etc/passwd": '
                                      '{"sha256": "' + "0" * 64 + '", "size": 1}}}'])
def test_a_missing_or_invalid_manifest_exits_2(repository: Path, manifest):
    if manifest is None:
        (repository / "artifact.json").unlink()
    else:
        (repository / "artifact.json").write_text(manifest)
    result = check(repository)
    assert result.returncode == 2
    assert result.stderr.startswith("artifact check failed: ") and "artifact.json" in result.stderr


# ---- The entrypoint: check, then exec Triton's command line pointed at what was checked ----------------------

def run_entrypoint(env: dict[str, str], tmp_path: Path) -> tuple[subprocess.CompletedProcess, Path]:
    """Run the entrypoint with a stand-in for tritonserver that prints the arguments it was given."""
    termination_log = tmp_path / "termination-log"
    command = ["sh", str(ENTRYPOINT), sys.executable, "-c", "import sys; print(sys.argv[1:])",
               "--model-repository=/mnt/models", "--grpc-port=9000", "--load-model=sentiment"]
    full_env = {"PATH": "/usr/bin:/bin", "DUET_CHECKER": str(CHART_CHECKER),
                "DUET_TERMINATION_LOG": str(termination_log), **env}
    result = subprocess.run(command, capture_output=True, text=True, env=full_env, timeout=120, check=False)
    return result, termination_log


def test_the_entrypoint_serves_a_good_repository(repository: Path, tmp_path: Path):
    result, termination_log = run_entrypoint({"DUET_MODEL_DIR": str(repository)}, tmp_path)
    assert result.returncode == 0, result.stderr
    passed, served = result.stdout.strip().splitlines()
    assert passed.startswith("artifact check passed")
    assert served == str([f"--model-repository={repository}", "--grpc-port=9000", "--load-model=sentiment"])
    assert not termination_log.exists()


def test_the_entrypoint_never_starts_triton_on_a_tampered_repository(repository: Path, tmp_path: Path):
    (repository / "sentiment" / "config.pbtxt").write_text("max_batch_size: 1024\n")
    result, termination_log = run_entrypoint({"DUET_MODEL_DIR": str(repository)}, tmp_path)
    assert result.returncode == 1
    assert "--grpc-port" not in result.stdout, "Triton must not start"
    message = "artifact check failed: sentiment/config.pbtxt"
    assert message in result.stderr
    assert termination_log.read_text().startswith(message), "kubectl describe pod shows the reason"


@pytest.fixture
def encrypted(repository: Path, tmp_path: Path) -> tuple[Path, Path]:
    """repository.tar.enc made with the openssl CLI as `duet models encrypt` makes it, and its key file."""
    if not shutil.which("openssl"):
        pytest.skip("the openssl CLI is not installed")
    key = tmp_path / "passphrase"
    key.write_text("correct horse battery staple\n")
    store = tmp_path / "mnt-models"
    store.mkdir()
    archive = subprocess.run(["tar", "-C", str(repository), "-cf", "-", "."], capture_output=True, check=True).stdout
    subprocess.run(["openssl", *OPENSSL_ENC, "-out", str(store / "repository.tar.enc"), "-pass", f"file:{key}"],
                   input=archive, check=True, timeout=60)
    return store, key


def test_the_entrypoint_decrypts_into_memory_checks_and_serves_from_there(encrypted, tmp_path: Path):
    store, key = encrypted
    decrypted = tmp_path / "decrypted"
    decrypted.mkdir()
    env = {"DUET_MODEL_DIR": str(store), "DUET_ARTIFACT_ENCRYPTED": str(store / "repository.tar.enc"),
           "DUET_ARTIFACT_KEY_FILE": str(key), "DUET_DECRYPTED_DIR": str(decrypted)}
    result, _ = run_entrypoint(env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"--model-repository={decrypted}" in result.stdout
    assert (decrypted / "sentiment" / "config.pbtxt").is_file()


def test_the_entrypoint_points_the_transformer_at_the_decrypted_repository(encrypted, tmp_path: Path):
    store, key = encrypted
    decrypted = tmp_path / "decrypted"
    decrypted.mkdir()
    env = {"PATH": "/usr/bin:/bin", "DUET_CHECKER": str(CHART_CHECKER), "DUET_MODEL_DIR": str(store),
           "DUET_ARTIFACT_ENCRYPTED": str(store / "repository.tar.enc"), "DUET_ARTIFACT_KEY_FILE": str(key),
           "DUET_DECRYPTED_DIR": str(decrypted), "DUET_TERMINATION_LOG": str(tmp_path / "log"),
           "DUET_MODEL_REPOSITORY": "/mnt/models"}
    command = ["sh", str(ENTRYPOINT), sys.executable, "-c", "import os; print(os.environ['DUET_MODEL_REPOSITORY'])"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(decrypted)


def test_the_entrypoint_refuses_a_wrong_key(encrypted, tmp_path: Path):
    store, _ = encrypted
    wrong = tmp_path / "wrong"
    wrong.write_text("not the key\n")
    decrypted = tmp_path / "decrypted"
    decrypted.mkdir()
    env = {"DUET_MODEL_DIR": str(store), "DUET_ARTIFACT_ENCRYPTED": str(store / "repository.tar.enc"),
           "DUET_ARTIFACT_KEY_FILE": str(wrong), "DUET_DECRYPTED_DIR": str(decrypted)}
    result, termination_log = run_entrypoint(env, tmp_path)
    assert result.returncode == 1
    assert "cannot be decrypted with the key" in result.stderr
    assert "cannot be decrypted" in termination_log.read_text()


# ---- The wiring in the rendered predictor ------------------------------------------------------------------------

def test_the_predictor_runs_the_entrypoint_with_the_check_mounted(render):
    for isvc in objects_of(render(), "InferenceService"):
        predictor = isvc["spec"]["predictor"]
        model = predictor["model"]
        assert model["command"] == ["/bin/sh", "/duet/artifact-entrypoint.sh"]
        assert model["terminationMessagePath"] == "/dev/termination-log"
        assert {"name": "duet-artifact-check", "mountPath": "/duet", "readOnly": True} in model["volumeMounts"]
        assert {"name": "duet-artifact-check",
                "configMap": {"name": "duet-artifact-check", "defaultMode": 0o555}} in predictor["volumes"]


def test_encryption_decrypts_into_memory_with_the_key_from_a_secret(render):
    objs = render(set_values={"triton.artifact.encryption.secretName": "model-key"})
    for isvc in objects_of(objs, "InferenceService"):
        predictor = isvc["spec"]["predictor"]
        volumes = {v["name"]: v for v in predictor["volumes"]}
        assert volumes["duet-repository"]["emptyDir"]["medium"] == "Memory"
        assert volumes["duet-artifact-key"]["secret"]["secretName"] == "model-key"
        transformer = isvc["spec"]["transformer"]
        container = transformer["containers"][0]
        # The transformer's side files are in the archive too: it decrypts the same way, then runs its image.
        assert container["command"] == ["/bin/sh", "/duet/artifact-entrypoint.sh", "python", "-m",
                                        "transformers_pre"]
        assert {v["name"] for v in transformer["volumes"]} >= {"duet-artifact-check", "duet-artifact-key",
                                                               "duet-repository"}
        for env_list in (predictor["model"]["env"], container["env"]):
            env = {e["name"]: e.get("value") for e in env_list}
            assert env["DUET_ARTIFACT_ENCRYPTED"] == "/mnt/models/repository.tar.enc"
            assert env["DUET_ARTIFACT_KEY_FILE"] == "/duet-key/passphrase"
            assert env["DUET_DECRYPTED_DIR"] == "/duet-repository"


def test_signature_verification_mounts_the_public_key_into_the_transformer(render):
    objs = render(set_values={"transformer.artifactSignature.verify": True,
                              "transformer.artifactSignature.configMapName": "duet-signing"})
    for isvc in objects_of(objs, "InferenceService"):
        transformer = isvc["spec"]["transformer"]
        container = transformer["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["DUET_VERIFY_ARTIFACTS"] == "true"
        assert env["DUET_ARTIFACT_PUBLIC_KEY"] == "/duet-signing/signing-key.pub"
        volume = next(v for v in transformer["volumes"] if v["name"] == "duet-signing-key")
        assert volume["configMap"]["name"] == "duet-signing"


def test_signature_verification_without_a_key_is_refused(render):
    import chart_support

    with pytest.raises(chart_support.HelmError, match="needs the public key"):
        render(set_values={"transformer.artifactSignature.verify": True})
