"""Open Inference Protocol v2 request bodies, built by `tritonclient.http` (the client duet's users run).

For callers that send the bytes themselves (httpx through an ingress with a Host header, locust's client) rather
than through `tritonclient`'s own connection. Inputs go in the binary tensor extension, as tritonclient and
KServe's clients send them; outputs come back as JSON unless asked for in binary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import tritonclient.http as httpclient

from transformers_pre import registry

JSON = "application/json"
BINARY = "application/octet-stream"


def bytes_input(name: str, values: Sequence[bytes | str], binary: bool = True) -> httpclient.InferInput:
    """A BYTES [n] input, one element per value (str is sent UTF-8 encoded): in the binary extension, or with
    binary=False as JSON strings (texts only: JSON cannot carry arbitrary bytes)."""
    tensor = httpclient.InferInput(name, [len(values)], "BYTES")
    encoded = [value.encode() if isinstance(value, str) else value for value in values]
    tensor.set_data_from_numpy(np.array(encoded, dtype=object), binary_data=binary)
    return tensor


def request_body(inputs: Sequence[httpclient.InferInput], outputs: Sequence[str] = (),
                 parameters: Mapping[str, object] | None = None,
                 binary_outputs: bool = False) -> tuple[bytes, dict[str, str]]:
    """The body of one `/v2/models/<model>/infer` request and the headers it needs.

    outputs: names to ask for (empty: every output, as JSON); binary_outputs asks for them in the binary
    extension (read the answer with `tritonclient.http.InferenceServerClient.parse_response_body`).
    """
    requested = [httpclient.InferRequestedOutput(name, binary_data=binary_outputs) for name in outputs] or None
    body, json_size = httpclient.InferenceServerClient.generate_request_body(
        list(inputs), outputs=requested, parameters=dict(parameters) if parameters else None)
    if json_size is None:
        return body, {"Content-Type": JSON}
    return body, {"Content-Type": BINARY, "Inference-Header-Content-Length": str(json_size)}


def model_request(model: str, values: Sequence[bytes | str], parameters: Mapping[str, object] | None = None,
                  binary: bool = True) -> tuple[bytes, dict[str, str]]:
    """A request to public model `model` (registry name): `values` as its input, its public outputs asked for
    as JSON."""
    spec = registry.model(model)
    return request_body([bytes_input(spec.input, values, binary)], outputs=spec.outputs, parameters=parameters)
