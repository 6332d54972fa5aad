"""duet's service objectives (`charts/duet/files/objectives.yaml`): the one source of the load test's
thresholds and the alerts' objectives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

OBJECTIVES_FILE = Path(__file__).resolve().parents[1] / "charts" / "duet" / "files" / "objectives.yaml"


@dataclass(frozen=True)
class Objectives:
    latency_p99_seconds: dict[str, float]  # public model -> p99 end-to-end latency objective
    error_ratio: float


def load_objectives(path: Path = OBJECTIVES_FILE) -> Objectives:
    document = yaml.safe_load(path.read_text())
    return Objectives(
        latency_p99_seconds={
            model: float(seconds) for model, seconds in document["latencyP99Seconds"].items()
        },
        error_ratio=float(document["errorRatio"]),
    )
