"""When is a study complete? After STABLE_SECONDS without a new instance, or at once when the four screening
views (L/R x CC/MLO) are there, or when the sender said so (a STOW-RS request is one whole study)."""

from __future__ import annotations

from .spool import Instance, Study

SCREENING_VIEWS = frozenset({("L", "CC"), ("R", "CC"), ("L", "MLO"), ("R", "MLO")})


def has_screening_set(instances: list[Instance]) -> bool:
    return SCREENING_VIEWS <= {(instance.laterality, instance.view) for instance in instances}


def is_complete(study: Study, instances: list[Instance], now: float, stable_seconds: float) -> bool:
    if not instances:
        return False
    return study.complete_now or has_screening_set(instances) or now - study.last_received >= stable_seconds
