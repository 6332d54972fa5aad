"""Request bodies for load tests, built by tritonclient (`duet.v2`): v2 JSON for sentiment headlines (what most
text clients send), the binary tensor extension for mammography studies."""

from __future__ import annotations

import random

from duet.v2 import model_request

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


def sentiment_body(texts: list[str]) -> tuple[bytes, dict[str, str]]:
    """A v2 JSON request for the sentiment model and its headers."""
    return model_request("sentiment", texts, binary=False)


def mammography_body(files: list[bytes], parameters: dict | None = None) -> tuple[bytes, dict[str, str]]:
    """A v2 request carrying one study's DICOM files in the binary tensor extension, and its headers."""
    return model_request("mammography", files, parameters)


def mammography_study(seed: int = 0, images: int = 4, rows: int = 2048, columns: int = 1664,
                      syntax: str = "explicit") -> list[bytes]:
    """One synthetic MG study (DICOM Part 10 files) from duet's phantom-based generator."""
    from duet.synthetic_dicom import synth_study

    return [image.to_bytes() for image in synth_study(seed, images=images, rows=rows, columns=columns,
                                                       syntax=syntax, degraded=False)]
