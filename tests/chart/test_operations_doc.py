"""docs/operations.md: install (with its prerequisites), upgrade, rollback, scaling and model swapping are
covered, there is a runbook section per alert and none for alerts that do not exist, and every chart value the
guide names exists in values.yaml (so the guide cannot silently go stale)."""

from __future__ import annotations

import re

import yaml
from chart_support import CHART, OPERATIONS_DOC, markdown_anchors, rule_names

DOC = OPERATIONS_DOC.read_text()
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def section(title: str) -> str:
    """Text of the `## title` section."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", DOC, flags=re.DOTALL | re.MULTILINE)
    assert match, f"docs/operations.md has no '## {title}' section"
    return match.group(1)


def test_guide_covers_install_upgrade_rollback_scaling_and_model_swaps():
    for title in ("Install", "Upgrade", "Rollback", "Scaling", "Swapping models", "Security", "Monitoring",
                  "Runbooks"):
        assert section(title).strip()
    prerequisites = section("Install")
    for needed in ("KServe", "KEDA", "kube-prometheus-stack", "nvidia.com/gpu", "enableModelcar"):
        assert needed in prerequisites, needed
    assert "helm rollback" in section("Rollback")
    assert "ignoreNullValues" in section("Scaling")


def test_one_runbook_per_alert_and_no_runbook_without_an_alert():
    _, alerts = rule_names()
    runbooks = set(re.findall(r"^### (\w+)$", section("Runbooks"), flags=re.MULTILINE))
    assert runbooks == alerts
    anchors = markdown_anchors(DOC)
    for link in re.findall(r"\]\(#([^)]+)\)", DOC):
        assert link in anchors, f"broken in-page link #{link}"


def test_every_chart_value_named_in_the_guide_exists():
    top_level = "|".join(map(re.escape, VALUES))
    named = set(re.findall(rf"`((?:{top_level})(?:\.[A-Za-z0-9]+)+)`", DOC))
    assert len(named) >= 15
    for dotted in named:
        node = VALUES
        for part in dotted.split("."):
            assert isinstance(node, dict) and part in node, f"docs/operations.md names unknown value {dotted}"
            node = node[part]
