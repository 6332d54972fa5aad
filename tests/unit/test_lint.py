"""The whole repository passes ruff (the configuration in pyproject.toml, E501 at 120 included), as `make lint`
checks it: a finding fails the unit tests, not only a lint run someone may skip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# ruff comes with the dev extra, as pytest does, so it sits beside the interpreter running the tests.
RUFF = Path(sys.executable).parent / "ruff"


def test_ruff_finds_nothing_in_the_repository() -> None:
    assert RUFF.exists(), f"no ruff beside {sys.executable}: install the dev extra (pip install -e '.[dev]')"
    completed = subprocess.run(
        [str(RUFF), "check", "--no-cache", "--output-format", "concise", "."],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert completed.returncode == 0, f"ruff check . found:\n{completed.stdout}{completed.stderr}"
