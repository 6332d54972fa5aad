"""Whether the served model is cleared for clinical use, as its model card says.

A model is cleared only when the `card.json` beside it (models/cards.py writes it) holds
`"cleared_for_clinical_use": true`. Anything else (no card, no field, false) serves the model labelled
"NOT FOR CLINICAL USE": the shipped synthetic-phantom detector has no such field, and a site's own model clears the
label through its own card, never through a request. The card's `clinical_validity` statement, when present, is
quoted in the label so a reader sees why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

CARD_FILE = "card.json"
CLEARED_FIELD = "cleared_for_clinical_use"
NOT_FOR_CLINICAL_USE = "NOT FOR CLINICAL USE"


class InvalidModelCard(ValueError):
    """The model's card.json cannot say whether the model is cleared (the model must not load)."""


@dataclass(frozen=True)
class ClinicalUse:
    """The label every result of a model carries: `notice` is None exactly when the model is cleared."""

    cleared: bool
    notice: str | None

    @classmethod
    def not_cleared(cls, reason: str) -> ClinicalUse:
        return cls(cleared=False, notice=f"{NOT_FOR_CLINICAL_USE}: {reason}")


UNKNOWN_MODEL = ClinicalUse.not_cleared(f"no model card clears this model ({CLEARED_FIELD} is not true).")


def read_clinical_use(model_folder: Path) -> ClinicalUse:
    """The label of the model in `model_folder`, from its `card.json`.

    Raises InvalidModelCard when the card exists but is not a JSON object, or when the field is there but is not a
    boolean (a card that says "yes" is a mistake to fix, not a clearance to guess).
    """
    path = Path(model_folder) / CARD_FILE
    if not path.exists():
        return ClinicalUse.not_cleared(f"the model has no {CARD_FILE} that clears it for clinical use.")
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InvalidModelCard(f"{path.name} is not JSON: {error}") from None
    if not isinstance(card, dict):
        raise InvalidModelCard(f"{path.name} must hold a JSON object, got {type(card).__name__}")
    cleared = card.get(CLEARED_FIELD, False)
    if not isinstance(cleared, bool):
        raise InvalidModelCard(f"{path.name}: {CLEARED_FIELD} must be true or false, got {cleared!r}")
    if cleared:
        return ClinicalUse(cleared=True, notice=None)
    validity = card.get("clinical_validity")
    if isinstance(validity, str) and validity.strip():
        return ClinicalUse.not_cleared(validity.strip())
    return UNKNOWN_MODEL
