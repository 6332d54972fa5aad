"""A model's tensor contract: its metadata, and the check every response goes through before it leaves."""

from __future__ import annotations

import numpy as np
import pytest

from transformers_pre.codecs import bytes_tensor
from transformers_pre.contract import ContractViolation, ModelContract, TensorSpec
from transformers_pre.dicom.model import MammographyModel
from transformers_pre.text.model import SentimentModel

CONTRACT = ModelContract(
    inputs=(TensorSpec("text", "BYTES", (-1,)),),
    outputs=(TensorSpec("probabilities", "FP32", (-1, "classes")), TensorSpec("label", "BYTES", (-1,))),
)


def _outputs(probabilities: np.ndarray) -> dict[str, np.ndarray]:
    return {"probabilities": probabilities, "label": bytes_tensor(["a"] * len(probabilities))}


def test_metadata_resolves_named_dimensions_once_known() -> None:
    unknown = {"name": "probabilities", "datatype": "FP32", "shape": [-1, -1]}
    assert CONTRACT.outputs[0].metadata({}) == unknown
    assert CONTRACT.outputs[0].metadata({"classes": 3})["shape"] == [-1, 3]


def test_outputs_that_match_pass() -> None:
    CONTRACT.check_outputs(_outputs(np.zeros((2, 3), np.float32)), {"classes": 3})


@pytest.mark.parametrize(("outputs", "names"), [
    ({"label": bytes_tensor(["a"])}, "are not the contract's"),
    (_outputs(np.zeros((2, 3), np.float64)), "FP64"),
    (_outputs(np.zeros((2, 4), np.float32)), "[2, 4]"),
    (_outputs(np.zeros(2, np.float32)), "[2]"),
])
def test_outputs_that_break_the_contract_are_named(outputs: dict[str, np.ndarray], names: str) -> None:
    with pytest.raises(ContractViolation) as violation:
        CONTRACT.check_outputs(outputs, {"classes": 3})
    assert names in str(violation.value)


@pytest.mark.parametrize("model_class", [MammographyModel, SentimentModel])
def test_each_model_declares_every_tensor(model_class: type) -> None:
    contract: ModelContract = model_class.contract
    for spec in contract.inputs + contract.outputs + contract.optional_outputs:
        assert spec.name and spec.datatype in {"BYTES", "FP32", "INT32"} and spec.shape and spec.description
    names = [spec.name for spec in contract.outputs + contract.optional_outputs]
    assert len(names) == len(set(names))
