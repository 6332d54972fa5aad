"""The model registry agrees with everything that names a model: the chart's values, the Triton model
repository, the transformer classes, the build packages, the CLI and the client code it points at.

A model added to one of them and not to the others fails here, not on a cluster.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
import shutil
from pathlib import Path

import pytest
import yaml
from kserve import Model

from duet.paths import MODEL_REPOSITORY, ROOT
from models import model_config
from transformers_pre import registry
from transformers_pre.predictor_client import PredictorClient
from transformers_pre.settings import PredictorSettings, Settings

CHART = ROOT / "charts" / "duet"
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
SPECS = list(registry.MODELS.values())


def spec_id(spec: registry.PublicModel) -> str:
    return spec.name


def test_names_are_unique_and_usable_in_kubernetes_names() -> None:
    assert list(registry.MODELS) == [spec.name for spec in SPECS] == list(registry.NAMES)
    for field in ("triton_model", "builder", "build_name"):
        values = [getattr(spec, field) for spec in SPECS]
        assert len(set(values)) == len(values), field
    for spec in SPECS:
        # The chart names the InferenceService <release>-<name>, and Knative/KServe need DNS-1035 labels.
        assert re.fullmatch(r"[a-z]([a-z0-9-]*[a-z0-9])?", spec.name), spec.name


def test_the_chart_values_have_one_block_per_registered_model() -> None:
    assert set(VALUES["models"]) == {spec.values_key for spec in SPECS}
    for spec in SPECS:
        block = VALUES["models"][spec.values_key]
        assert block["tritonModel"] == spec.triton_model, spec.name


def test_no_chart_template_lists_models_by_hand() -> None:
    for template in (CHART / "templates").iterdir():
        text = re.sub(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", "", template.read_text(), flags=re.DOTALL)  # comments
        for spec in SPECS:
            assert f'"{spec.name}"' not in text, f"{template.name} names {spec.name!r}: range over .Values.models"


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_the_repository_has_the_triton_model(spec: registry.PublicModel) -> None:
    config_path = MODEL_REPOSITORY / spec.triton_model / "config.pbtxt"
    assert config_path.exists(), f"{spec.name}: no {config_path.relative_to(ROOT)}"
    assert model_config.load(config_path).name == spec.triton_model


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_the_transformer_class_imports_and_serves_its_names(spec: registry.PublicModel) -> None:
    transformer = registry.load(spec.transformer)
    assert inspect.isclass(transformer) and issubclass(transformer, Model)
    # The predictor client connects lazily: constructing the model touches no network.
    model = transformer(Settings(), PredictorClient("127.0.0.1:1", "grpc-v2", PredictorSettings()))
    assert model.name == spec.name
    assert model.predictor_model == spec.triton_model
    declared_inputs = [tensor["name"] for tensor in model.get_input_types()]
    declared_outputs = [tensor["name"] for tensor in model.get_output_types()]
    if declared_inputs:
        assert declared_inputs == [spec.input]
    if declared_outputs:
        assert declared_outputs == list(spec.outputs)


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_the_transformer_loads_from_its_side_files_alone(spec: registry.PublicModel, tmp_path: Path) -> None:
    """The registry's side files are all the transformer needs beside the model (what a storage URI must hold)."""
    built = MODEL_REPOSITORY / spec.triton_model
    if not (built / "1").exists():
        pytest.skip(f"{spec.triton_model} not built (make models)")
    folder = tmp_path / spec.triton_model
    folder.mkdir()
    for name in spec.side_files:
        assert (built / name).exists(), f"the {spec.triton_model} build did not write {name}"
        shutil.copy(built / name, folder / name)
    model = registry.load(spec.transformer)(Settings(model_repository=tmp_path),
                                            PredictorClient("127.0.0.1:1", "grpc-v2", PredictorSettings()))
    assert model.load()


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_the_build_package_has_a_recipe_and_a_build(spec: registry.PublicModel) -> None:
    # Read, not imported: the build modules import torch.
    found = importlib.util.find_spec(f"{spec.builder}.build")
    assert found is not None and found.origin, spec.builder
    tree = ast.parse(Path(found.origin).read_text())
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert {"recipe", "build"} <= set(functions), spec.builder
    # models.build calls recipe(quick=...) and build(folder, recipe, progress).
    assert "quick" in [arg.arg for arg in functions["recipe"].args.args], spec.builder
    assert len(functions["build"].args.args) == 3, spec.builder


@pytest.mark.parametrize("spec", SPECS, ids=spec_id)
def test_the_client_code_it_names_imports(spec: registry.PublicModel) -> None:
    smoke = registry.load(spec.smoke)
    assert list(inspect.signature(smoke).parameters) == ["client", "base", "host", "seed"]
    show = registry.load(spec.show)
    assert len(inspect.signature(show).parameters) == 4
    if spec.evaluator:
        # Found, not imported: the evaluation may pull the build's dependencies.
        module, _, function = spec.evaluator.partition(":")
        found = importlib.util.find_spec(module)
        assert found is not None and found.origin, spec.evaluator
        tree = ast.parse(Path(found.origin).read_text())
        assert function in {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}, spec.evaluator


def test_the_cli_offers_every_registered_model() -> None:
    from duet.cli import Only

    assert sorted(member.value for member in Only) == sorted(spec.build_name for spec in SPECS)
    for spec in SPECS:
        assert registry.by_build_name(spec.build_name) is spec
        assert registry.by_build_name(spec.triton_model) is spec
    with pytest.raises(KeyError, match="no model is built by"):
        registry.by_build_name("nope")
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        registry.model("nope")


def test_the_gate_floors_cover_every_registered_model() -> None:
    from models.gates import FLOORS

    assert set(FLOORS) == {spec.triton_model for spec in SPECS}
