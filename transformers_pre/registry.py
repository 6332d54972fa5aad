"""The public models duet serves, each described once.

These read this table to know which models exist: the container entry point
(`python -m transformers_pre --model NAME`), the `duet` CLI (`up`, `infer`, `models build`, `cluster smoke`),
the local stack, the benchmarks, the tests and, through a test that compares them, the Helm chart's
`.Values.models` and the Triton model repository.

It lives in `transformers_pre` because the transformer image carries only this package, and it imports nothing:
code is named by "module:attribute" strings and imported only by the process that runs it (the transformer
never imports the build code or the CLI, `models/` never imports this module; `duet` passes it what it
needs). Adding a model is one entry here plus the model's own code (see docs/models.md, "Adding a model").
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PublicModel:
    """One public model: what the transformer serves, what Triton runs behind it and how it is built.

    name: the public v2 model name (`/v2/models/<name>/infer`), the transformer's `--model` value and the key of
        its block in the chart's values (`models.<name>`).
    triton_model: the folder in the Triton model repository (`<repository>/<triton_model>/config.pbtxt`), which
        the predictor loads and the transformer asks for.
    transformer: "module:Class" of the transformer (a `kserve.Model` taking `(settings, predictor)`).
    input: the public request's one input tensor (BYTES [n]).
    outputs: the public outputs every answer carries, in order (docs/api.md); clients ask for them by name.
    side_files: files beside the model (same storage URI) that the transformer reads at load time, relative to
        `<repository>/<triton_model>/`; every build writes them.
    optional_side_files: side files the transformer uses when present and does without otherwise.
    builder: the build package under `models/`; `<builder>.build` has `recipe(quick)` and
        `build(folder, recipe, progress)`. Its last part is the `duet models build --only` name.
    smoke: "module:function" sending one request and checking the answer for `duet cluster smoke`:
        `(httpx_client, base_url, host_header, seed) -> summary`, raising ValueError when the answer breaks the
        public contract (docs/api.md).
    show: "module:function" behind `duet infer <name> INPUTS...`: `(url, inputs, console, report) -> None`.
    evaluator: "module:function" that `duet models build` runs on a built model folder to measure it and complete
        its card, `(folder, recipe, progress) -> metrics` (None: the build's own metrics are the card's).
    first_build_minutes: how long a first build (training and evaluation) takes on 2 idle cores
        (docs/models.md): builds run quickest first, and `duet up --build` says how long the rest will take.
    """

    name: str
    triton_model: str
    transformer: str
    input: str
    outputs: tuple[str, ...]
    side_files: tuple[str, ...]
    optional_side_files: tuple[str, ...]
    builder: str
    smoke: str
    show: str
    evaluator: str | None = None
    first_build_minutes: float = 1.0

    @property
    def values_key(self) -> str:
        """Key of this model's block in the chart's values (`.Values.models.<key>`)."""
        return self.name

    @property
    def build_name(self) -> str:
        """`duet models build --only` name: the build package's own name."""
        return self.builder.rsplit(".", 1)[-1]


MODELS: dict[str, PublicModel] = {
    model.name: model
    for model in (
        PublicModel(
            name="mammography",
            triton_model="mammo_detector",
            transformer="transformers_pre.dicom.model:MammographyModel",
            input="dicom",
            outputs=("boxes", "scores", "labels", "image_index", "quality", "risk"),
            side_files=("labels.txt", "thresholds.json"),
            optional_side_files=("calibration.json",),
            builder="models.detector",
            smoke="duet.cluster:smoke_mammography",
            show="duet.infer:infer_mammography",
            evaluator="evaluation.served:evaluate_detector",
            first_build_minutes=5.0,
        ),
        PublicModel(
            name="sentiment",
            triton_model="sentiment",
            transformer="transformers_pre.text.model:SentimentModel",
            input="text",
            outputs=("probabilities", "label", "entropy"),
            side_files=("tokenizer.json", "labels.txt", "preprocess.json"),
            optional_side_files=(),
            builder="models.sentiment",
            smoke="duet.cluster:smoke_sentiment",
            show="duet.infer:infer_sentiment",
            first_build_minutes=2.0,
        ),
    )
}

NAMES: tuple[str, ...] = tuple(MODELS)


def model(name: str) -> PublicModel:
    """The public model called `name`; KeyError naming the known ones otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}: one of {', '.join(NAMES)}") from None


def by_build_name(name: str) -> PublicModel:
    """The public model whose build package (or Triton model) is called `name` (`duet models build --only`)."""
    for candidate in MODELS.values():
        if name in (candidate.build_name, candidate.triton_model):
            return candidate
    raise KeyError(f"no model is built by {name!r}: one of {', '.join(m.build_name for m in MODELS.values())}")


def load(reference: str) -> Any:
    """Import "module:attribute" (a registry entry's code) and return the attribute."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)
