"""The alert rules of deploy/prometheus/alerts.yml fire when they should and stay quiet when they
should, under ``promtool test rules`` (series given minute by minute).

promtool compares annotations too; the rules are tested without theirs (``check rules`` in
test_prometheus.py parses the templates), so the texts are not written twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests import deploy_files, prometheus

JOB = 'job="oxify"'


@dataclass(frozen=True)
class Case:
    """At ``at`` (minutes after the series start), ``alert`` fires with ``labels`` (beside its
    own), or stays quiet when ``labels`` is None."""

    alert: str
    series: dict[str, str]
    at: int
    labels: dict[str, str] | None


def histogram(name: str, buckets: dict[str, str]) -> dict[str, str]:
    """The ``_bucket`` series of one histogram, by ``le``."""
    return {f'{name}_bucket{{{JOB}, le="{le}"}}': values for le, values in buckets.items()}


def runs_finished(status: str) -> str:
    return f'oxify_runs_finished_total{{{JOB}, workflow="w", status="{status}"}}'


def http_requests(status: str) -> str:
    return f'oxify_http_requests_total{{{JOB}, method="GET", route="/x", status="{status}"}}'


CASES = [
    Case(
        "OxifyRunsFailing",
        {runs_finished("failed"): "0+2x60", runs_finished("completed"): "0+2x60"},
        at=40,
        labels={},
    ),
    # A fifth of the runs failed, but too few runs finished to say.
    Case(
        "OxifyRunsFailing",
        {runs_finished("failed"): "0+0.1x60", runs_finished("completed"): "0+0.4x60"},
        at=40,
        labels=None,
    ),
    Case("OxifyQueueGrowing", {f"oxify_queue_depth{{{JOB}}}": "0+5x60"}, at=40, labels={}),
    Case("OxifyQueueGrowing", {f"oxify_queue_depth{{{JOB}}}": "500x60"}, at=40, labels=None),
    Case(
        "OxifyQueueWaitHigh",
        histogram(
            "oxify_queue_wait_seconds", {"30": "0+1x60", "60": "0+100x60", "+Inf": "0+100x60"}
        ),
        at=30,
        labels={},
    ),
    Case(
        "OxifyFormWaitingTooLong",
        {f"oxify_forms_oldest_pending_age_seconds{{{JOB}}}": "259000+60x120"},
        at=90,
        labels={},
    ),
    Case(
        "OxifyFormWaitingTooLong",
        {f"oxify_forms_oldest_pending_age_seconds{{{JOB}}}": "86400+60x120"},
        at=90,
        labels=None,
    ),
    Case(
        "OxifyEventPublishLagHigh",
        histogram(
            "oxify_event_publish_lag_seconds",
            {"0.025": "0+90x60", "0.05": "0+100x60", "+Inf": "0+100x60"},
        ),
        at=30,
        labels={},
    ),
    Case(
        "OxifyEventNotifyLagHigh",
        histogram(
            "oxify_event_notify_lag_seconds",
            {"0.025": "0+90x60", "0.05": "0+100x60", "+Inf": "0+100x60"},
        ),
        at=30,
        labels={},
    ),
    Case(
        "OxifyEventNotifyLagHigh",
        histogram("oxify_event_notify_lag_seconds", {"0.025": "0+100x60", "+Inf": "0+100x60"}),
        at=30,
        labels=None,
    ),
    Case(
        "OxifyTakeoverSlow",
        histogram(
            "oxify_takeover_delay_seconds", {"3": "0+0x60", "10": "0+1x60", "+Inf": "0+1x60"}
        ),
        at=40,
        labels={},
    ),
    Case(
        "OxifyTakeoverSlow",
        histogram("oxify_takeover_delay_seconds", {"3": "0+1x60", "+Inf": "0+1x60"}),
        at=40,
        labels=None,
    ),
    Case(
        "OxifyFencedWrites", {f"oxify_fenced_writes_total{{{JOB}}}": "0x5 1x20"}, at=10, labels={}
    ),
    Case("OxifyFencedWrites", {f"oxify_fenced_writes_total{{{JOB}}}": "3x30"}, at=20, labels=None),
    Case(
        "OxifyLLMSpendHigh",
        {f'oxify_llm_cost_dollars_total{{{JOB}, provider="openai", model="m"}}': "0+1x120"},
        at=90,
        labels={},
    ),
    Case(
        "OxifyReplicaDown",
        {f'up{{{JOB}, instance="a:8000"}}': "1x5 0x10", f'up{{{JOB}, instance="b:8000"}}': "1x15"},
        at=10,
        labels={"job": "oxify", "instance": "a:8000"},
    ),
    Case("OxifyNoReplicaUp", {f'up{{{JOB}, instance="a:8000"}}': "1x5 0x10"}, at=10, labels={}),
    Case("OxifyNoReplicaUp", {f'up{{{JOB}, instance="a:8000"}}': "1x15"}, at=10, labels=None),
    Case(
        "OxifyHTTPErrors",
        {http_requests("500"): "0+10x30", http_requests("200"): "0+90x30"},
        at=20,
        labels={},
    ),
    Case(
        "OxifyHTTPErrors",
        {http_requests("500"): "0+1x30", http_requests("200"): "0+99x30"},
        at=20,
        labels=None,
    ),
]


def unit_test(case: Case) -> dict[str, Any]:
    """One promtool test group: the case's series, and the alerts expected at ``at``."""
    expected = (
        [] if case.labels is None else [{"exp_labels": {**rule_labels(case.alert), **case.labels}}]
    )
    return {
        "interval": "1m",
        "input_series": [{"series": s, "values": v} for s, v in case.series.items()],
        "alert_rule_test": [
            {"eval_time": f"{case.at}m", "alertname": case.alert, "exp_alerts": expected}
        ],
    }


def rule_labels(alert: str) -> dict[str, str]:
    rule = next(rule for rule in deploy_files.alert_rules() if rule["alert"] == alert)
    labels: dict[str, str] = rule["labels"]
    return labels


def test_every_alert_has_a_case_where_it_fires() -> None:
    firing = {case.alert for case in CASES if case.labels is not None}
    assert firing == {rule["alert"] for rule in deploy_files.alert_rules()}


async def test_the_alerts_fire_when_they_should(prometheus_bin: Path, tmp_path: Path) -> None:
    rules = [
        {k: v for k, v in rule.items() if k != "annotations"} for rule in deploy_files.alert_rules()
    ]
    rule_file = tmp_path / "alerts.yml"
    rule_file.write_text(json.dumps({"groups": [{"name": "oxify", "rules": rules}]}))
    tests = {
        "rule_files": [str(rule_file)],
        "evaluation_interval": "1m",
        "tests": [unit_test(case) for case in CASES],
    }
    test_file = tmp_path / "alerts_test.yml"
    test_file.write_text(json.dumps(tests))
    code, output = await prometheus.promtool(prometheus_bin, "test", "rules", str(test_file))
    assert code == 0, output
