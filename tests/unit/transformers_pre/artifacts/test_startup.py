"""The transformer's startup check (DUET_VERIFY_ARTIFACTS), settings read from the environment as in a pod."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from transformers_pre.artifacts import manifest, signing
from transformers_pre.artifacts.startup import REFUSED_EXIT_CODE, ArtifactSettings, verify_mounted_repository

from .conftest import Keys


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, repository: Path, keys: Keys) -> pytest.MonkeyPatch:
    manifest.write_manifest(repository)
    signing.sign(repository, keys.private)
    monkeypatch.setenv("DUET_MODEL_REPOSITORY", str(repository))
    monkeypatch.setenv("DUET_VERIFY_ARTIFACTS", "true")
    monkeypatch.setenv("DUET_ARTIFACT_PUBLIC_KEY", str(keys.public))
    return monkeypatch


def test_off_by_default_even_on_a_broken_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DUET_VERIFY_ARTIFACTS", raising=False)
    monkeypatch.setenv("DUET_MODEL_REPOSITORY", str(tmp_path))
    verify_mounted_repository()  # no artifact.json there: nothing is checked, nothing raised


def test_a_signed_repository_passes_and_says_so(environment: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="duet"):
        verify_mounted_repository()
    assert "verified: 6 files, signature valid" in caplog.text


def test_another_public_key_refuses_with_exit_code_and_log_line(environment: pytest.MonkeyPatch, other_keys: Keys,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    environment.setenv("DUET_ARTIFACT_PUBLIC_KEY", str(other_keys.public))
    with pytest.raises(SystemExit) as exited:
        verify_mounted_repository()
    assert exited.value.code == REFUSED_EXIT_CODE
    assert "refused, not serving: model.sig: " in caplog.text


def test_without_a_public_key_the_digests_are_still_checked(environment: pytest.MonkeyPatch, repository: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    environment.delenv("DUET_ARTIFACT_PUBLIC_KEY")
    (repository / "sentiment/tokenizer.json").write_text("{}")
    assert ArtifactSettings().artifact_public_key is None
    with pytest.raises(SystemExit):
        verify_mounted_repository()
    assert "checking the model repository's digests only" in caplog.text
    assert "sentiment/tokenizer.json: size" in caplog.text
