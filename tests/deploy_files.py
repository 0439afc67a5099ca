"""What the tests read from ``deploy/``: the Grafana dashboard's and the alert rules' PromQL."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "oxify.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
EXAMPLE_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"

GRAFANA_INTERVAL = re.compile(r"\$__\w+")  # $__rate_interval, $__interval, $__range
GRAFANA_VARIABLE = re.compile(r"\$\{?(\w+)\}?")  # $workflow, ${job}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def dashboard_panels() -> list[dict[str, Any]]:
    """The panels that draw something (rows left out)."""
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def dashboard_exprs() -> list[str]:
    """Every PromQL expression of the dashboard as Grafana writes it: its panels' queries and its
    query variables' ``label_values(metric, label)`` (as the selector ``metric``)."""
    exprs = [target["expr"] for panel in dashboard_panels() for target in panel["targets"]]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((\w+), *\w+\)", variable["query"]["query"])
            assert match, variable["query"]
            exprs.append(match[1])
    return exprs


def as_promql(expr: str) -> str:
    """A dashboard expression as Prometheus would get it: intervals 1m, every variable ``.*``
    (what "All" sends; variables only appear in regex matchers, a unit test makes sure)."""
    return GRAFANA_VARIABLE.sub(".*", GRAFANA_INTERVAL.sub("1m", expr))


def alert_rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in loaded["groups"] for rule in group["rules"]]
