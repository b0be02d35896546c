"""deploy/observability/: the alert rules pass promtool (syntax and their unit tests), the
dashboard's queries parse, and every metric either names is one the processes export."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import httpx
import pytest
import yaml

from swarm_oauth.registrar.metrics import RegistrarMetrics
from swarm_oauth.registrar.status import StatusBoard
from tests.support.observability import (
    DASHBOARD,
    OBSERVABILITY,
    RULES,
    dashboard_queries,
    exported,
    named_metrics,
)
from tests.support.requirements import unavailable


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        unavailable("promtool is missing (Debian package prometheus; .ci/packages.sh)")
    return path


def test_the_alert_rules_pass_promtool():
    tool = promtool()
    checked = subprocess.run([tool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    tested = subprocess.run(
        [tool, "test", "rules", "alerts.test.yml"],
        capture_output=True,
        text=True,
        cwd=OBSERVABILITY,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_unit_tested_and_says_what_to_do():
    alerts = [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]
    tests = yaml.safe_load((OBSERVABILITY / "alerts.test.yml").read_text())["tests"]
    firing = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {rule["alert"] for rule in alerts} == firing
    for rule in alerts:
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_dashboards_queries_parse(tmp_path):
    # promtool has no query checker; recording rules made of the queries are parsed the same.
    queries = [q.replace("$__rate_interval", "5m") for q in dashboard_queries()]
    assert queries
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query{n}", "expr": q} for n, q in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_is_importable():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"]


@pytest.fixture
def server_exposition(token_server):
    """/metrics of a real server that has issued, refused and administered."""
    metrics_url = token_server.url + "/metrics"
    secret = token_server.add_client("orders")["client_secret"]
    assert token_server.token("orders", secret).status_code == 200
    assert token_server.token("orders", "wrong").status_code == 401
    # The store's gauges exist from the server's first change-watcher round on.
    deadline = time.monotonic() + 10
    while "swarm_oauth_store_up" not in exported(text := httpx.get(metrics_url).text):
        assert time.monotonic() < deadline, "no store gauges after 10 s"
        time.sleep(0.1)
    return text


def test_every_server_metric_the_rules_and_dashboard_name_is_exported(server_exposition):
    names = {n for n in named_metrics() if not n.startswith("swarm_oauth_registrar_")}
    served = exported(server_exposition)
    assert sorted(names - served) == []


def test_every_registrar_metric_the_rules_and_dashboard_name_is_exported():
    from prometheus_client import generate_latest

    names = {n for n in named_metrics() if n.startswith("swarm_oauth_registrar_")}
    metrics = RegistrarMetrics(StatusBoard())
    metrics.watch_queue(lambda: 0)
    metrics.full_pass(0)
    served = exported(generate_latest(metrics.registry).decode())
    assert sorted(names - served) == []
