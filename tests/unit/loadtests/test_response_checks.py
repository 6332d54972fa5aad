"""The load tests' response checks fail on responses that break the v2 contract, not only on statuses."""

from __future__ import annotations

import pytest

from loadtests.checks import check_tensor


def outputs(**tensors: dict) -> dict[str, dict]:
    return {name: {"name": name, **tensor} for name, tensor in tensors.items()}


def test_a_well_formed_output_passes() -> None:
    check_tensor(outputs(probabilities={"datatype": "FP32", "shape": [2, 3], "data": [0.1] * 6}),
                 "probabilities", "FP32", [2, 3])
    check_tensor(outputs(boxes={"datatype": "FP32", "shape": [0, 4], "data": []}), "boxes", "FP32", [None, 4])


@pytest.mark.parametrize(("tensors", "problem"), [
    ({}, "missing"),
    ({"probabilities": {"datatype": "FP64", "shape": [2, 3], "data": [0.1] * 6}}, "FP64"),
    ({"probabilities": {"datatype": "FP32", "shape": [3, 3], "data": [0.1] * 9}}, "shape"),
    ({"probabilities": {"datatype": "FP32", "shape": [2, 3], "data": [0.1] * 5}}, "holds 5 values"),
])
def test_a_broken_output_fails_the_check(tensors: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        check_tensor(outputs(**tensors), "probabilities", "FP32", [2, 3])
