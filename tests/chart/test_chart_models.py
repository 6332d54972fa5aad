"""The chart renders one set of objects per entry of `.Values.models`: a third model is a values block (plus its
registry entry and code), a disabled one renders nothing, and a misspelt one is refused."""

from __future__ import annotations

import copy
from pathlib import Path

import chart_support
import pytest
import yaml
from chart_support import CHART, objects_of

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
# Two replicas of everything, so that every per-model kind renders (budgets only exist above one replica).
HA = CHART / "ci" / "ha-values.yaml"
PER_MODEL_KINDS = ("InferenceService", "NetworkPolicy", "PodDisruptionBudget")


def _names(objs: list[dict], kind: str) -> list[str]:
    return sorted(o["metadata"]["name"] for o in objects_of(objs, kind))


def test_a_third_model_in_values_gets_its_own_objects(render, tmp_path: Path) -> None:
    block = copy.deepcopy(VALUES["models"]["sentiment"])
    block["tritonModel"] = "headline_topics"
    block["predictor"]["minReplicas"] = block["transformer"]["minReplicas"] = 2
    values = tmp_path / "third-model.yaml"
    values.write_text(yaml.safe_dump({"models": {"headlines": block}}))
    default, three = render(values_files=[HA]), render(values_files=[HA, values])
    for kind in PER_MODEL_KINDS:
        added = set(_names(three, kind)) - set(_names(default, kind))
        assert added and all("headlines" in name for name in added), kind
    isvc = next(o for o in objects_of(three, "InferenceService") if o["metadata"]["name"] == "duet-headlines")
    assert isvc["metadata"]["labels"]["duet/model"] == "headlines"
    assert "--load-model=headline_topics" in str(isvc["spec"]["predictor"])
    assert "--model=headlines" in isvc["spec"]["transformer"]["containers"][0]["args"]


def test_a_disabled_model_renders_nothing_and_the_other_still_does(render) -> None:
    objs = render(values_files=[HA], set_values={"models.sentiment.enabled": False})
    for kind in PER_MODEL_KINDS:
        names = _names(objs, kind)
        assert names and not any("sentiment" in name for name in names), kind
    assert _names(objs, "InferenceService") == ["duet-mammography"]


@pytest.mark.parametrize(("set_values", "message"), [
    ({"models.mamography.enabled": False}, "missing properties"),
    ({"models.Sentiment_2.enabled": True}, "/models"),
])
def test_a_misspelt_or_invalid_model_name_is_refused(render, set_values, message) -> None:
    with pytest.raises(chart_support.HelmError) as error:
        render(set_values=set_values)
    assert message in str(error.value)
