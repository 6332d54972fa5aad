"""A model version rolled out, promoted and rolled back, rendered for both modes (docs/operations.md, "Rolling out a
model version"): Knative through KServe's canaryTrafficPercent, Standard through a second InferenceService."""

from __future__ import annotations

import chart_support as helm_tools
import pytest
from chart_support import CHART, objects_of
from kserve_rules import CANARY_MODES

STABLE_URI = "s3://models-bucket/duet/model_repository/1.4.0"
CANDIDATE_URI = "s3://models-bucket/duet/model_repository/1.5.0"
KNATIVE = [CHART / "ci" / "knative-values.yaml"]
STORAGE = {"modelRepository.storageUri": STABLE_URI}


def by_name(objs: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects_of(objs, "InferenceService")}


def storage_of(isvc: dict) -> set[str]:
    """storageUri of the predictor and STORAGE_URI of the transformer (the side files): one version per pod."""
    env = {e["name"]: e.get("value") for e in isvc["spec"]["transformer"]["containers"][0]["env"]}
    return {isvc["spec"]["predictor"]["model"]["storageUri"], env["STORAGE_URI"]}


def test_knative_canary_sends_a_share_to_the_new_revision_of_both_components(render):
    assert "Knative" in CANARY_MODES
    canary = by_name(render(KNATIVE, {**STORAGE, "models.mammography.canary.storageUri": CANDIDATE_URI,
                                      "models.mammography.canary.trafficPercent": 10}))
    mammography = canary["duet-mammography"]
    assert storage_of(mammography) == {CANDIDATE_URI}
    for component in ("predictor", "transformer"):
        assert mammography["spec"][component]["canaryTrafficPercent"] == 10
    assert storage_of(canary["duet-sentiment"]) == {STABLE_URI}
    assert "canaryTrafficPercent" not in canary["duet-sentiment"]["spec"]["predictor"]
    assert set(canary) == {"duet-mammography", "duet-sentiment"}, "no second InferenceService in Knative mode"


def test_knative_promote_and_rollback_render_one_version_at_full_traffic(render):
    promoted = by_name(render(KNATIVE, {"modelRepository.storageUri": STABLE_URI,
                                        "models.mammography.storageUri": CANDIDATE_URI}))["duet-mammography"]
    rolled_back = by_name(render(KNATIVE, STORAGE))["duet-mammography"]
    assert storage_of(promoted) == {CANDIDATE_URI}
    assert storage_of(rolled_back) == {STABLE_URI}
    for isvc in (promoted, rolled_back):
        for component in ("predictor", "transformer"):
            assert "canaryTrafficPercent" not in isvc["spec"][component], "no percent: 100% to the latest revision"


def test_standard_canary_is_a_second_inference_service_with_fixed_replicas(render):
    objs = render(set_values={**STORAGE, "models.sentiment.canary.storageUri": CANDIDATE_URI,
                              "models.sentiment.canary.trafficPercent": 20, "models.sentiment.canary.replicas": 2})
    services = by_name(objs)
    assert set(services) == {"duet-mammography", "duet-sentiment", "duet-sentiment-canary"}
    stable, canary = services["duet-sentiment"], services["duet-sentiment-canary"]
    assert storage_of(stable) == {STABLE_URI} and storage_of(canary) == {CANDIDATE_URI}
    annotations = canary["metadata"]["annotations"]
    assert annotations["duet/canary-of"] == "duet-sentiment"
    assert annotations["duet/traffic-percent"] == "20"
    # KServe's raw reconciler ignores canaryTrafficPercent; a fixed pod count, no autoscaler of its own.
    assert annotations["serving.kserve.io/autoscalerClass"] == "none"
    for component in ("predictor", "transformer"):
        spec = canary["spec"][component]
        assert "canaryTrafficPercent" not in spec and "autoScaling" not in spec
        assert spec["minReplicas"] == spec["maxReplicas"] == 2
        assert spec["labels"]["duet/track"] == "canary"
        assert spec["labels"]["duet/model"] == "sentiment"
    args = canary["spec"]["transformer"]["containers"][0]["args"]
    assert "--predictor_host=duet-sentiment-canary-predictor.duet:80" in args, "the canary calls its own predictor"


def test_standard_promote_and_rollback_leave_only_the_stable_inference_service(render):
    promoted = by_name(render(set_values={"modelRepository.storageUri": STABLE_URI,
                                          "models.sentiment.storageUri": CANDIDATE_URI}))
    rolled_back = by_name(render(set_values=STORAGE))
    for services, uri in ((promoted, CANDIDATE_URI), (rolled_back, STABLE_URI)):
        assert set(services) == {"duet-mammography", "duet-sentiment"}
        assert storage_of(services["duet-sentiment"]) == {uri}


def test_a_canary_of_the_version_already_served_is_refused(render):
    with pytest.raises(helm_tools.HelmError, match="canary.storageUri is the version already served"):
        render(set_values={**STORAGE, "models.sentiment.canary.storageUri": STABLE_URI})


def test_a_long_release_name_keeps_the_canary_name_distinct_and_short(render):
    release = "a-very-long-release-name-for-the-clinic"
    services = by_name(render(set_values={**STORAGE, "models.sentiment.canary.storageUri": CANDIDATE_URI},
                              release=release))
    canaries = [n for n in services if n.endswith("-canary")]
    assert len(canaries) == 1 and len(services) == 3, "two models or a canary must never share a name"
    assert canaries[0].endswith("-sentiment-canary")
    # KServe derives <name>-transformer-... objects from it; Kubernetes names stop at 63 characters.
    assert len(canaries[0]) + len("-transformer") <= 63


def test_notes_name_the_canary_and_the_command_to_compare_versions(helm):
    out = helm_tools.run_helm(["install", "duet", str(CHART), "-n", "duet", "--dry-run=client",
                               "-f", str(CHART / "ci" / "canary-standard-values.yaml")])
    notes = out.split("NOTES:", 1)[1]
    assert "Canary: sentiment sends 20% of its requests to " + CANDIDATE_URI in notes
    assert "duet-sentiment-canary" in notes
    assert "duet cluster traffic --namespace duet --release duet" in notes
    assert "Canary:" not in helm_tools.run_helm(["install", "duet", str(CHART), "-n", "duet", "--dry-run=client"])
