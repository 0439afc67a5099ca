"""The Grafana dashboard and the alert rules in ``deploy/`` name only metrics Oxify serves (the
list of issue 15, kept here: renaming a metric breaks this test), and are shaped as Grafana and
Prometheus expect. Their PromQL is parsed by promtool in tests/e2e/test_prometheus.py."""

from __future__ import annotations

import re

from tests import deploy_files

# Every series name Oxify's /metrics serves that a dashboard or a rule may use: counters and
# gauges by name, histograms by their base name (``_bucket``, ``_sum`` and ``_count`` follow).
COUNTERS = {
    "oxify_runs_finished_total",
    "oxify_node_retries_total",
    "oxify_llm_tokens_total",
    "oxify_llm_cost_dollars_total",
    "oxify_llm_cache_requests_total",
    "oxify_lease_takeovers_total",
    "oxify_fenced_writes_total",
    "oxify_http_requests_total",
    "process_cpu_seconds_total",
}
GAUGES = {
    "oxify_runs",
    "oxify_queue_depth",
    "oxify_forms_pending",
    "oxify_forms_oldest_pending_age_seconds",
    "oxify_stream_subscribers",
    "oxify_build_info",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_max_fds",
}
HISTOGRAMS = {
    "oxify_run_duration_seconds",
    "oxify_node_duration_seconds",
    "oxify_queue_wait_seconds",
    "oxify_form_response_seconds",
    "oxify_llm_time_to_first_token_seconds",
    "oxify_event_publish_lag_seconds",
    "oxify_event_notify_lag_seconds",
    "oxify_takeover_delay_seconds",
    "oxify_http_request_duration_seconds",
}
HISTOGRAM_SERIES = {
    f"{name}{suffix}" for name in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")
}
SERIES = COUNTERS | GAUGES | HISTOGRAM_SERIES
METRIC_NAME = re.compile(r"\b(?:oxify|process)_\w+")
ROWS = ["Runs", "Nodes", "People", "LLM", "Events and streams", "Leases", "HTTP", "Process"]
SEVERITIES = {"critical", "warning", "info"}


def metric(series: str) -> str:
    """The metric a series belongs to (a histogram's base name)."""
    for suffix in ("_bucket", "_sum", "_count"):
        if series.endswith(suffix) and series.removesuffix(suffix) in HISTOGRAMS:
            return series.removesuffix(suffix)
    return series


def test_the_dashboard_names_only_known_metrics_and_shows_them_all() -> None:
    named = {name for expr in deploy_files.dashboard_exprs() for name in METRIC_NAME.findall(expr)}
    assert named - SERIES == set()
    assert {metric(series) for series in named} == COUNTERS | GAUGES | HISTOGRAMS


def test_the_alert_rules_name_only_known_metrics() -> None:
    named = {
        name for rule in deploy_files.alert_rules() for name in METRIC_NAME.findall(rule["expr"])
    }
    assert named
    assert named - SERIES == set()


def test_the_dashboard_has_its_variables_rows_and_a_query_on_every_panel() -> None:
    board = deploy_files.dashboard()
    assert board["schemaVersion"] >= 39
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["workflow"]["type"] == "query"
    assert [p["title"] for p in board["panels"] if p["type"] == "row"] == ROWS
    assert len({panel["id"] for panel in board["panels"]}) == len(board["panels"])
    for panel in deploy_files.dashboard_panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        assert all(target["expr"] for target in panel["targets"]), panel["title"]


def test_dashboard_variables_only_appear_in_regex_matchers() -> None:
    """A variable set to several values (or All) expands to ``a|b``: only ``=~`` matches that."""
    for expr in deploy_files.dashboard_exprs():
        for found in deploy_files.GRAFANA_VARIABLE.finditer(
            deploy_files.GRAFANA_INTERVAL.sub("", expr)
        ):
            assert expr[found.start() - 3 : found.start()] == '=~"', expr


def test_every_alert_waits_and_says_how_bad_and_what_happened() -> None:
    rules = deploy_files.alert_rules()
    assert len({rule["alert"] for rule in rules}) == len(rules)
    for rule in rules:
        assert rule["for"], rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]
