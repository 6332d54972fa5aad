"""A public model whose build is still running: named, listed, never ready, and every request for it is a 503
that says so (`--building NAME`, which the local stack's first run passes while `duet models build` works).

Without it, a newcomer who sends a study while the detector trains would read "model does not exist".
"""

from __future__ import annotations

from kserve import Model

from .errors import ModelStillBuilding


class ModelBeingBuilt(Model):
    """Stands in for a public model until its build is installed; the stack then restarts the transformer with
    the real one. KServe asks a model's `healthy()` before every readiness answer and infer, and this one
    answers with its refusal, as its metadata does, so each request gets the 503 with its reason."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.ready = False

    def refusal(self) -> ModelStillBuilding:
        return ModelStillBuilding(
            f"model {self.name} is still being built on this machine (the first `make up` trains it): it is "
            "served as soon as its build has passed its quality gates, in minutes; retry later")

    async def healthy(self) -> bool:
        raise self.refusal()

    def load(self) -> bool:
        # KServe's own `load` would mark the model ready.
        raise self.refusal()

    def get_input_types(self) -> list[dict]:
        # Metadata (inputs, version, model card) is the build's: there is none to describe yet.
        raise self.refusal()
