"""The transformer's own check of the mounted model repository at startup (DUET_VERIFY_ARTIFACTS=true).

The transformer reads side files from the same artifact Triton serves (tokenizer.json, labels, thresholds), so it
refuses to start on one that fails its digests or signature: the process exits with a log line naming the file,
and the pod never becomes Ready.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from .signing import ArtifactError, verify_repository

REFUSED_EXIT_CODE = 3
logger = logging.getLogger("duet")


class ArtifactSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DUET_", extra="ignore")

    verify_artifacts: bool = False
    artifact_public_key: Path | None = None  # without one only the digests are checked (a warning says so)
    model_repository: Path = Path("models/model_repository")


def verify_mounted_repository(settings: ArtifactSettings | None = None) -> None:
    """Return when the check is off or passes; otherwise log why and exit with REFUSED_EXIT_CODE."""
    settings = settings or ArtifactSettings()
    if not settings.verify_artifacts:
        return
    if settings.artifact_public_key is None:
        logger.warning("DUET_ARTIFACT_PUBLIC_KEY is not set: checking the model repository's digests only, "
                       "not its signature")
    try:
        count = verify_repository(settings.model_repository, settings.artifact_public_key)
    except ArtifactError as error:
        logger.error("model repository %s refused, not serving: %s", settings.model_repository, error)
        raise SystemExit(REFUSED_EXIT_CODE) from None
    logger.info("model repository %s verified: %d files%s", settings.model_repository, count,
                "" if settings.artifact_public_key is None else ", signature valid")
