"""The layering of docs/architecture.md, read from the sources: the transformer image needs neither torch nor
the CLI, the build code never depends on serving code, the model registry (which the transformer image carries
and everything else reads) depends on nothing, and inside the transformer the core knows neither the transport
nor the models, the transport knows no model, and no model knows the transport or another model."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from duet.paths import ROOT

PACKAGE = ROOT / "transformers_pre"
# Inside transformers_pre: its layers, by module (docs/architecture.md). `__main__` wires them all together.
CORE = {"artifacts", "base", "blob", "body", "building", "clinical_use", "codecs", "contract", "errors",
        "kserve_compat", "logs", "metrics", "predictor_client", "registry", "settings", "versions"}
TRANSPORT = {"access", "binary_request", "dataplane", "grpc_interceptors", "grpc_servicer", "middleware",
             "rest_errors", "routes", "server"}
MODELS = {"dicom", "text"}


def top_level_imports(path: Path) -> set[str]:
    """First components of the absolute imports in one source file (relative imports stay in the package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def package_imports(path: Path) -> set[str]:
    """The transformers_pre modules or subpackages (first component below transformers_pre) one file imports,
    relative or absolute."""
    here = path.relative_to(PACKAGE).parent.parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = list(here[: len(here) - (node.level - 1)])
            parts = base + (node.module.split(".") if node.module else [])
            found |= {parts[0]} if parts else {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("transformers_pre."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names
                      if alias.name.startswith("transformers_pre.")}
    return found


def layer_of(path: Path) -> str:
    first = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    return first


@pytest.mark.parametrize(("package", "forbidden"), [
    ("transformers_pre", {"torch", "onnxruntime", "duet", "models", "evaluation", "typer", "locust"}),
    ("models", {"transformers_pre", "duet", "evaluation", "kserve"}),
])
def test_a_package_never_imports_what_its_layer_may_not(package: str, forbidden: set[str]) -> None:
    offending = {str(path.relative_to(ROOT)): sorted(top_level_imports(path) & forbidden)
                 for path in (ROOT / package).rglob("*.py")}
    assert {path: names for path, names in offending.items() if names} == {}


def test_the_model_registry_imports_only_the_standard_library() -> None:
    imported = top_level_imports(ROOT / "transformers_pre" / "registry.py") - {"__future__"}
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


def test_every_transformer_module_has_a_layer() -> None:
    named = CORE | TRANSPORT | MODELS | {"__init__", "__main__"}
    unplaced = {layer_of(path) for path in PACKAGE.rglob("*.py")} - named
    assert not unplaced, f"place {sorted(unplaced)} in a layer here and in docs/architecture.md"


@pytest.mark.parametrize(("layer", "forbidden"), [
    ("core", TRANSPORT | MODELS),
    ("transport", MODELS),
    ("dicom", TRANSPORT | {"text"}),
    ("text", TRANSPORT | {"dicom"}),
])
def test_inside_the_transformer_a_layer_never_imports_what_it_may_not(layer: str,
                                                                       forbidden: set[str]) -> None:
    members = {"core": CORE, "transport": TRANSPORT}.get(layer, {layer})
    offending = {}
    for path in PACKAGE.rglob("*.py"):
        if layer_of(path) in members:
            wrong = package_imports(path) & forbidden
            if wrong:
                offending[str(path.relative_to(ROOT))] = sorted(wrong)
    assert offending == {}


def test_the_layering_check_resolves_relative_imports_from_a_subpackage() -> None:
    # dicom/model.py imports `..errors` (the core) and `.findings` (its own package): both must be seen, or
    # the checks above could pass by seeing nothing.
    imports = package_imports(PACKAGE / "dicom" / "model.py")
    assert {"errors", "settings", "dicom"} <= imports, imports
