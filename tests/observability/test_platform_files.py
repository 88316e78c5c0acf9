"""The Grafana dashboard and the Prometheus alert rules in platform/ use only metrics the
platform exports (config/metrics.py), and the alerts the issue asks for are there."""

from __future__ import annotations

import json
import re

import yaml

from config.metrics import metric_names
from tests.conftest import ROOT

METRIC = re.compile(r"\b(cba_[a-z0-9_]+)\b")


def dashboard_exprs() -> list[str]:
    board = json.loads((ROOT / "platform/grafana/circuit-breaker-agents.json").read_text())
    return [target["expr"] for panel in board["panels"] for target in panel["targets"]]


def alert_rules() -> list[dict]:
    rules = yaml.safe_load((ROOT / "platform/prometheus/alerts.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def test_every_metric_the_dashboard_uses_is_exported():
    exprs = dashboard_exprs()
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert used, "the dashboard queries nothing"
    assert used <= metric_names(), used - metric_names()
    # Every exported metric family is on the dashboard.
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in metric_names()}
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in used}
    assert families == shown, families - shown


def test_the_alerts_cover_the_targets_and_use_exported_metrics():
    rules = alert_rules()
    names = {rule["alert"] for rule in rules}
    assert {
        "CbaHighErrorRate",
        "CbaHighLatencyP95",
        "CbaQueueBacklog",
        "CbaCircuitBreakerOpen",
    } <= names
    for rule in rules:
        used = set(METRIC.findall(rule["expr"]))
        assert used and used <= metric_names(), (rule["alert"], used - metric_names())
        assert rule["labels"]["severity"] in {"page", "warn"}
        assert rule["annotations"]["summary"]
    by_name = {rule["alert"]: rule["expr"] for rule in rules}
    assert "> 0.01" in by_name["CbaHighErrorRate"]
    assert 'status=~"5.."' in by_name["CbaHighErrorRate"]
    assert "histogram_quantile(0.95" in by_name["CbaHighLatencyP95"]
    assert "== 2" in by_name["CbaCircuitBreakerOpen"]
