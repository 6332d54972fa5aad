"""Request bodies for load tests: v2 JSON for sentiment, v2 binary-extension bodies for mammography studies."""

from __future__ import annotations

import json
import random

SUBJECTS = ["Stocks", "The central bank", "A regional airline", "City council", "Tech giant", "Farmers",
            "The health ministry", "Oil prices", "A local bakery", "Union leaders"]
VERBS = ["soar after", "collapse amid", "hold steady despite", "announce plans for", "warn of",
         "celebrate", "reject", "brace for", "report record", "cut jobs after"]
OBJECTS = ["strong earnings", "a surprise rate cut", "weak demand", "new regulations", "a data breach",
           "a record harvest", "the merger vote", "a heat wave", "holiday sales", "rising costs"]


def headlines(count: int, seed: int = 0) -> list[str]:
    """Synthetic news headlines (deterministic per seed), varied in length and tone."""
    rng = random.Random(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}" for _ in range(count)]


def sentiment_body(texts: list[str]) -> dict:
    """A v2 JSON request for the sentiment model."""
    return {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}


def binary_bytes_body(name: str, elements: list[bytes], parameters: dict | None = None) -> tuple[bytes, dict]:
    """A v2 request with one BYTES input in the binary tensor extension, and the headers it needs."""
    payload = b"".join(len(e).to_bytes(4, "little") + e for e in elements)
    header = {"inputs": [{"name": name, "shape": [len(elements)], "datatype": "BYTES",
                          "parameters": {"binary_data_size": len(payload)}}]}
    if parameters:
        header["parameters"] = parameters
    header_bytes = json.dumps(header).encode()
    return header_bytes + payload, {
        "Inference-Header-Content-Length": str(len(header_bytes)),
        "Content-Type": "application/octet-stream",
    }


def mammography_study(seed: int = 0, images: int = 4, rows: int = 2048, columns: int = 1664,
                      syntax: str = "explicit") -> list[bytes]:
    """One synthetic MG study (DICOM Part 10 files) from duet's phantom-based generator."""
    from duet.dicom_synth import synth_study

    return [image.to_bytes() for image in synth_study(seed, images=images, rows=rows, columns=columns,
                                                       syntax=syntax, degraded=False)]
