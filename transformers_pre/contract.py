"""A public model's tensor contract, declared once by its transformer class.

The same declaration answers the v2 metadata (`GET /v2/models/<name>`, gRPC ModelMetadata), names the input
the codecs read, and is checked against every response before it leaves (`ModelContract.check_outputs`), so
what the metadata promises is what the service sends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from kserve.utils.utils import from_np_dtype

# A dimension is a number, -1 (variable: the number of texts, images or findings), or the name of a dimension
# the model only knows once loaded (e.g. "classes": the number of labels in its labels.txt).
Dimension = int | str


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor of the public v2 contract."""

    name: str
    datatype: str
    shape: tuple[Dimension, ...]
    description: str = ""

    def resolved_shape(self, dimensions: Mapping[str, int]) -> list[int]:
        """The shape with named dimensions replaced by their loaded values (-1 while unknown)."""
        return [dimensions.get(size, -1) if isinstance(size, str) else size for size in self.shape]

    def metadata(self, dimensions: Mapping[str, int]) -> dict[str, Any]:
        """The v2 metadata tensor (`name`, `datatype`, `shape`)."""
        return {"name": self.name, "datatype": self.datatype, "shape": self.resolved_shape(dimensions)}


class ContractViolation(RuntimeError):
    """A response the transformer built does not match its own contract (a bug, never the client's fault)."""


@dataclass(frozen=True)
class ModelContract:
    """Every input and output of one public model.

    outputs: the tensors every answer carries, in order. optional_outputs: tensors an answer carries only when
    the request asks for them (e.g. mammography's `report`), listed in the metadata's parameters.
    """

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    optional_outputs: tuple[TensorSpec, ...] = ()

    @property
    def input(self) -> TensorSpec:
        """The one request tensor (duet's public models each take one)."""
        return self.inputs[0]

    def check_outputs(self, outputs: Mapping[str, np.ndarray], dimensions: Mapping[str, int]) -> None:
        """Raise ContractViolation unless `outputs` are exactly the contract's outputs, each of its datatype,
        rank and fixed sizes."""
        names = [spec.name for spec in self.outputs]
        if list(outputs) != names:
            raise ContractViolation(f"outputs {list(outputs)} are not the contract's {names}")
        for spec in self.outputs:
            array = outputs[spec.name]
            datatype = from_np_dtype(array.dtype)
            expected = spec.resolved_shape(dimensions)
            sizes_match = len(array.shape) == len(expected) and all(
                want in (-1, got) for want, got in zip(expected, array.shape))
            if datatype != spec.datatype or not sizes_match:
                raise ContractViolation(f"output {spec.name!r} is {datatype} {list(array.shape)}; the "
                                        f"contract says {spec.datatype} {expected}")
