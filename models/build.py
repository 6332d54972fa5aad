"""Build the shipped models reproducibly, with a cache keyed by a hash of each recipe.

A recipe hash covers the recipe itself (seeds, steps, sizes), the source of the model's build package and the
versions of the packages that shape the result. An unchanged recipe is copied from the cache instead of being
retrained; the cache lives outside the clone (`duet.paths.cache_dir()`) so fresh clones and CI reuse it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.progress import Progress

from .cards import package_versions
from .gates import ceilings_for, check_gates, floors_for, gates_markdown

PACKAGE_ROOT = Path(__file__).resolve().parent
HASHED_PACKAGES = ["torch", "onnx", "onnxruntime", "transformers", "tokenizers", "numpy", "scikit-learn"]
STAMP = ".recipe"


def recipe_hash(builder: str, recipe: dict[str, Any]) -> str:
    """sha256 (first 16 hex digits) of the recipe, the sources of the build package `builder` (dotted, e.g.
    "models.sentiment") and the key package versions."""
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode())
    # find_spec locates the package without running its __init__ (which may import torch).
    package = Path(importlib.util.find_spec(builder).submodule_search_locations[0]).resolve()
    sources = sorted(package.rglob("*.py")) + [PACKAGE_ROOT / "cards.py"]
    for source in sources:
        digest.update(source.relative_to(PACKAGE_ROOT).as_posix().encode())
        digest.update(source.read_bytes())
    digest.update(json.dumps(package_versions(HASHED_PACKAGES), sort_keys=True).encode())
    return digest.hexdigest()[:16]


COMMITTED_REPOSITORY = PACKAGE_ROOT / "model_repository"


def _install(built: Path, model_dir: Path, stamp: str) -> None:
    """Replace the generated files of a repository model folder (config.pbtxt stays) with a built one.

    A folder without a config (`--out` elsewhere) gets the committed config.pbtxt and its variants in
    `configs/`, so it is a complete Triton model folder; an existing config is never overwritten.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    committed = COMMITTED_REPOSITORY / model_dir.name
    if not (model_dir / "config.pbtxt").exists():
        for name in ("config.pbtxt", "configs"):
            source = committed / name
            if source.is_dir():
                shutil.copytree(source, model_dir / name, dirs_exist_ok=True)
            elif source.exists():
                shutil.copy2(source, model_dir / name)
    for entry in model_dir.iterdir():
        if entry.name in ("config.pbtxt", "configs"):
            continue
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    for entry in built.iterdir():
        if entry.name == STAMP:
            continue
        target = model_dir / entry.name
        shutil.copytree(entry, target) if entry.is_dir() else shutil.copy2(entry, target)
    (model_dir / STAMP).write_text(stamp + "\n")


def build_model(
    model: str,
    repository: Path,
    cache: Path,
    progress: Progress,
    *,
    builder: str,
    quick: bool = False,
    force: bool = False,
    say: Callable[[str], None] = print,
    floors: dict[str, float] | None = None,
    evaluate: Callable[[Path, dict[str, Any], Progress], Any] | None = None,
    on_long_work: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Build (or fetch from the cache) one model into `repository/<model>` with the build package `builder`
    (dotted, e.g. "models.sentiment": the model registry's `builder`); returns its card.

    Before anything is installed, and for an installed build too, its metrics are checked against `floors`
    (default: `models.gates.FLOORS` for the full or quick build); a metric below its floor raises
    `QualityGateError` and leaves the repository as it was. The floors and measured values go on the card.

    evaluate: measures a built (cached) model folder and completes its card (`(folder, recipe, progress)`, the
    registry's `evaluator`, e.g. the detector's evaluation through the served pipeline, which `models` may not
    import). It runs once per cached build, on a card without `metrics.evaluated_with`.

    on_long_work: called once, before training or evaluation starts (not for an installed or cached build), so
    a caller can serve what it has instead of waiting (`duet up --build`).
    """
    ceilings = ceilings_for(model, quick) if floors is None else {}
    floors = floors_for(model, quick) if floors is None else floors
    build = importlib.import_module(f"{builder}.build")
    recipe = build.recipe(quick=quick)
    stamp = f"{model}-{'quick-' if quick else ''}{recipe_hash(builder, recipe)}"
    model_dir = repository / model
    cached = cache / "models" / stamp
    if not force and (model_dir / STAMP).exists() and (model_dir / STAMP).read_text().strip() == stamp:
        say(f"{model}: up to date ({stamp})")
        card = json.loads((model_dir / "card.json").read_text())
        gates = check_gates(model, card.get("metrics", {}), floors, ceilings)
        return card if card.get("quality_gates") == gates else _record_gates(model_dir, card, gates)
    trained = force or not (cached / STAMP).exists()
    if trained:
        say(f"{model}: building recipe {stamp}")
        on_long_work()
        partial = cached.with_name(cached.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        build.build(partial, recipe, progress)
        (partial / STAMP).write_text(stamp + "\n")
        shutil.rmtree(cached, ignore_errors=True)
        partial.rename(cached)
    else:
        say(f"{model}: cached build {stamp}")
    card = json.loads((cached / "card.json").read_text())
    if evaluate is not None and "evaluated_with" not in card.get("metrics", {}):
        if not trained:
            on_long_work()
        say(f"{model}: evaluating {stamp}")
        evaluate(cached, recipe, progress)
        card = json.loads((cached / "card.json").read_text())
    gates = check_gates(model, card.get("metrics", {}), floors, ceilings)
    _install(cached, model_dir, stamp)
    return _record_gates(model_dir, card, gates)


def _record_gates(model_dir: Path, card: dict[str, Any], gates: dict[str, Any]) -> dict[str, Any]:
    """Put the gate record on the installed card (card.json and README.md); returns the card."""
    card = {**card, "quality_gates": gates}
    (model_dir / "card.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    readme = model_dir / "README.md"
    if readme.exists():
        text = readme.read_text()
        text = text.split("\n## Quality gates\n", 1)[0].rstrip() + "\n"
        readme.write_text(text + "\n" + gates_markdown(gates))
    return card
