"""What deploy/observability/ names: the metrics its alert rules and dashboard query, and
the names an exposition offers them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

OBSERVABILITY = Path(__file__).resolve().parents[2] / "deploy" / "observability"
RULES = OBSERVABILITY / "alerts.yml"
DASHBOARD = OBSERVABILITY / "grafana-dashboard.json"
METRIC = re.compile(r"\bswarm_oauth_[a-z0-9_]+\b")


def dashboard_queries() -> list[str]:
    """The PromQL of every dashboard panel."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def named_metrics() -> set[str]:
    """Every swarm-oauth metric name the alert rules and the dashboard use."""
    text = RULES.read_text() + "\n".join(dashboard_queries())
    return set(METRIC.findall(text))


def exported(exposition: str) -> set[str]:
    """Every name a query may use for what this exposition holds."""
    names = set()
    for family in text_string_to_metric_families(exposition):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names
