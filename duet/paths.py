"""Where duet's files live: the repository checkout, its run folder and the model build cache."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL_REPOSITORY = ROOT / "models" / "model_repository"
RUN_DIR = ROOT / ".duet" / "run"


def cache_dir() -> Path:
    """Model build cache, outside the clone so a fresh clone (CI) reuses builds: $DUET_CACHE_DIR or XDG cache."""
    explicit = os.environ.get("DUET_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "duet"
