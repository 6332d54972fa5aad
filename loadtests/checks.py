"""Checks of a v2 inference response against the contract: outputs present, datatypes, shapes, value counts.

Pure functions (no locust import), so the load tests' notion of a good answer is unit-tested in the test runner's
own process; the locustfile calls them on every response.
"""

from __future__ import annotations

from typing import Any


def outputs_by_name(reply: Any) -> dict[str, dict]:
    """The v2 response's outputs by name; raises TypeError when the body is not a v2 response."""
    body = reply.json()
    if not isinstance(body, dict) or not isinstance(body.get("outputs"), list):
        raise TypeError("the body is not a v2 inference response")
    return {output["name"]: output for output in body["outputs"]}


def check_tensor(outputs: dict[str, dict], name: str, datatype: str, shape: list[int | None]) -> None:
    """The output exists with this datatype and shape (None = any size) and holds as many values as it says."""
    if name not in outputs:
        raise ValueError(f"output {name!r} is missing")
    output = outputs[name]
    if output.get("datatype") != datatype:
        raise ValueError(f"output {name!r} is {output.get('datatype')}, expected {datatype}")
    actual = output.get("shape") or []
    if len(actual) != len(shape) or any(want is not None and want != got for want, got in zip(shape, actual)):
        raise ValueError(f"output {name!r} has shape {actual}, expected {shape}")
    count = 1
    for size in actual:
        count *= size
    data = output.get("data")
    if data is not None and len(data) != count:
        raise ValueError(f"output {name!r} holds {len(data)} values for shape {actual}")
