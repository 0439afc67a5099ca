"""Health: golden documents give known issues, pointers and scores."""

from __future__ import annotations

from typing import Any

from app.engine.analysis import health
from app.engine.compile import graph
from tests.support import edge, node, workflow
from tests.unit.engine.analysis.documents import branchy, healthy, llm, unhealthy


def test_every_issue_of_the_unhealthy_document_with_its_pointer() -> None:
    report = health.health(graph.plan_workflow(unhealthy()))
    found = {(i.code, i.pointer) for i in report.issues}
    assert found == {
        ("no_retry", "/nodes/1"),
        ("no_timeout", "/nodes/1"),
        ("literal_secret", "/nodes/1/config/headers/Authorization"),
        ("insecure_http", "/nodes/1/config/url"),
        ("no_retry", "/nodes/2"),
        ("no_timeout", "/nodes/2"),
        ("llm_no_max_tokens", "/nodes/2/config"),
        ("unreachable_node", "/nodes/3"),
    }
    # 100 - (2 x 8 no_retry + 2 x 8 no_timeout + 20 secret + 8 http + 8 max_tokens + 8 orphan)
    assert report.score == 24
    assert report.counts == {"error": 1, "warning": 7, "info": 0}
    secret = next(i for i in report.issues if i.code == "literal_secret")
    assert (secret.category, secret.severity, secret.node_id) == ("security", "error", "fetch")
    assert secret.suggestion


def test_a_healthy_document_scores_100() -> None:
    report = health.health(graph.plan_workflow(healthy()))
    assert report.issues == []
    assert report.score == 100


def test_one_code_counts_at_most_three_times() -> None:
    calls = [llm(f"ask{i}", max_tokens=10, timeout_s=5) for i in range(6)]
    report = health.health(graph.plan_workflow(workflow(calls, [])))
    assert [i.code for i in report.issues] == ["no_retry"] * 6
    assert report.score == 100 - 3 * health.WEIGHTS["warning"]


def test_issues_inside_containers_point_into_their_body() -> None:
    body = {
        "nodes": [llm("ask", max_tokens=10, retry={"max_retries": 1}, timeout_s=5)],
        "edges": [],
    }
    loop = node("loop", "foreach", items=[1, 2], body=body)
    spin = node("spin", "while", condition="index < 3", body={"nodes": [node("t")], "edges": []})
    report = health.health(graph.plan_workflow(workflow([loop, spin], [edge("loop", "spin")])))
    assert [(i.code, i.pointer) for i in report.issues] == [
        ("sequential_calls_in_loop", "/nodes/0/config"),
        ("while_default_cap", "/nodes/1/config"),
    ]
    assert report.score == 96


def test_a_retry_of_zero_retries_is_no_retry_and_api_key_values_are_secrets() -> None:
    call = node(
        "call",
        "http",
        url="https://example.com",
        auth={"type": "api_key", "in": "header", "name": "X-Key", "value": "abc"},
        retry={"max_retries": 0},
        timeout_s=3,
    )
    report = health.health(graph.plan_workflow(workflow([call], [])))
    assert [(i.code, i.pointer) for i in report.issues] == [
        ("no_retry", "/nodes/0"),
        ("literal_secret", "/nodes/0/config/auth/value"),
    ]


def test_deep_nesting_is_reported_past_three_containers() -> None:
    inner: dict[str, Any] = {"nodes": [node("leaf")], "edges": []}
    for depth in range(4):
        inner = {"nodes": [node(f"r{depth}", "repeat", count=1, body=inner)], "edges": []}
    document = workflow(inner["nodes"], [])
    report = health.health(graph.plan_workflow(document))
    assert [(i.code, i.node_id) for i in report.issues] == [("deep_nesting", "leaf")]


def test_documents_without_calls_are_clean() -> None:
    assert health.health(graph.plan_workflow(branchy())).score == 100
