"""The package layering of DESIGN.md, read from the sources: the transformer image needs neither torch nor the
CLI, the build code never depends on serving code, and the model registry (which the transformer image carries
and everything else reads) depends on nothing."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from duet.paths import ROOT


def top_level_imports(path: Path) -> set[str]:
    """First components of the absolute imports in one source file (relative imports stay in the package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(("package", "forbidden"), [
    ("transformers_pre", {"torch", "onnxruntime", "duet", "predictors", "evaluation", "typer", "locust"}),
    ("predictors", {"transformers_pre", "duet", "evaluation", "kserve"}),
])
def test_a_package_never_imports_what_its_layer_may_not(package: str, forbidden: set[str]) -> None:
    offending = {str(path.relative_to(ROOT)): sorted(top_level_imports(path) & forbidden)
                 for path in (ROOT / package).rglob("*.py")}
    assert {path: names for path, names in offending.items() if names} == {}


def test_the_model_registry_imports_only_the_standard_library() -> None:
    imported = top_level_imports(ROOT / "transformers_pre" / "registry.py") - {"__future__"}
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)
