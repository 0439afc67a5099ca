"""A workflow document's health: issues found in its plan, and a score from 0 to 100.

Formula (deterministic; the README states it too)::

    score = max(0, 100 - sum over issue codes of weight(severity(code)) * min(count(code), 3))
    weight: error 20, warning 8, info 2

Each code has one severity; counting a code at most three times keeps one repeated habit
(every call without a retry) from hiding every other problem. Issues are sorted by pointer, then
by code.

Codes (category, severity):

- ``unreachable_node`` (structure, warning): a graph has a ``start`` node and this node is not
  reachable from it (it runs as a second root, which is rarely meant).
- ``no_retry`` (reliability, warning): a call node (http, graphql, mcp, llm, agent, retriever,
  index) without a ``retry`` policy (or with ``max_retries`` 0): one transient failure fails it.
- ``no_timeout`` (reliability, warning): a call node with neither the node's ``timeout_s`` nor a
  config ``timeout_s``: only a type default (or the run's timeout) bounds it.
- ``llm_no_max_tokens`` (cost, warning): an llm or agent node without ``max_tokens``.
- ``literal_secret`` (security, error): a credential written in the document (a bearer token,
  password, api key value or an ``Authorization``-like header) instead of a template or a stored
  credential.
- ``insecure_http`` (security, warning): a literal ``http://`` URL to a host that is not loopback.
- ``sequential_calls_in_loop`` (performance, info): a ``foreach`` with concurrency 1 whose body
  makes calls: the items run one after another.
- ``while_default_cap`` (reliability, info): a ``while`` loop relying on the default
  ``max_iterations``.
- ``deep_nesting`` (maintainability, info): a node inside more than three containers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from app.domain.analysis import Category, HealthIssue, HealthReport, Severity
from app.engine.analysis import graphs
from app.engine.compile.plan import Plan, PlanNode

WEIGHTS: Mapping[Severity, int] = {"error": 20, "warning": 8, "info": 2}
COUNTED_AT_MOST = 3  # occurrences of one code that lower the score
MAX_NESTING = 3  # containers around a node before it is "deep"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


@dataclass(frozen=True, slots=True)
class Rule:
    category: Category
    severity: Severity
    suggestion: str


RULES: Mapping[str, Rule] = {
    "unreachable_node": Rule(
        "structure", "warning", "Add an edge from a node reachable from start, or remove it."
    ),
    "no_retry": Rule(
        "reliability",
        "warning",
        'Add "retry": {"max_retries": 3} so a transient failure does not fail the node.',
    ),
    "no_timeout": Rule("reliability", "warning", 'Set the node\'s "timeout_s".'),
    "llm_no_max_tokens": Rule("cost", "warning", 'Set "max_tokens" to bound the answer.'),
    "literal_secret": Rule(
        "security",
        "error",
        'Use {"type": "credential", "name": ...} or a template such as "{{ inputs.token }}".',
    ),
    "insecure_http": Rule("security", "warning", "Use https://."),
    "sequential_calls_in_loop": Rule(
        "performance", "info", 'Set "concurrency" so independent items run together.'
    ),
    "while_default_cap": Rule(
        "reliability", "info", 'Set "max_iterations" to the most iterations you expect.'
    ),
    "deep_nesting": Rule(
        "maintainability", "info", "Move the inner containers into a sub-workflow."
    ),
}

_SECRET_KEY = re.compile(
    r"^(authorization|proxy-authorization|x-api-key|api[-_]?key|x-auth-token|token|"
    r"access[-_]?token|secret|client[-_]?secret|password)$",
    re.IGNORECASE,
)
_AUTH_SECRETS = {"bearer": "token", "basic": "password", "api_key": "value"}
_URL_KEYS = frozenset({"url", "base_url"})


def health(plan: Plan) -> HealthReport:
    """The issues of a planned document and its score (the module docstring's formula)."""
    issues = sorted(_issues(plan), key=lambda i: (i.pointer, i.code))
    return HealthReport(score=score(issues), issues=issues, counts=_counts(issues))


def score(issues: list[HealthIssue]) -> int:
    """100 less each code's weight times its count (at most :data:`COUNTED_AT_MOST`)."""
    per_code: dict[str, int] = {}
    for issue in issues:
        per_code[issue.code] = per_code.get(issue.code, 0) + 1
    penalty = sum(
        WEIGHTS[RULES[code].severity] * min(n, COUNTED_AT_MOST) for code, n in per_code.items()
    )
    return max(0, 100 - penalty)


def _counts(issues: list[HealthIssue]) -> dict[str, int]:
    counts: dict[str, int] = dict.fromkeys(WEIGHTS, 0)
    for issue in issues:
        counts[issue.severity] += 1
    return counts


def _issue(code: str, pointer: str, node: PlanNode, message: str) -> HealthIssue:
    rule = RULES[code]
    return HealthIssue(
        code=code,
        category=rule.category,
        severity=rule.severity,
        pointer=pointer,
        node_id=node.id,
        message=message,
        suggestion=rule.suggestion,
    )


def _issues(plan: Plan) -> Iterator[HealthIssue]:
    for graph in graphs.graphs(plan):
        yield from _unreachable(graph)
    for visit in graphs.walk(plan):
        node = visit.node
        yield from _node_issues(node)
        yield from _literals(node, node.raw_config, f"{node.pointer}/config")
        if len(visit.containers) > MAX_NESTING:
            message = f"{node.id} is inside {len(visit.containers)} containers"
            yield _issue("deep_nesting", node.pointer, node, message)


def _unreachable(graph: Plan) -> Iterator[HealthIssue]:
    starts = [n for n in graph.nodes.values() if n.type == "start"]
    if not starts:
        return
    reach = graphs.descendants(graph)
    reached = 0
    for start in starts:
        reached |= (1 << start.position) | reach[start.id]
    for node in graph.nodes.values():
        if not reached >> node.position & 1:
            message = f"{node.id} is not reachable from {starts[0].id}"
            yield _issue("unreachable_node", node.pointer, node, message)


def _node_issues(node: PlanNode) -> Iterator[HealthIssue]:
    config = node.raw_config
    if node.type in graphs.CALL_TYPES:
        if node.options.retry is None or node.options.retry.max_retries == 0:
            message = f"{node.type} node {node.id} has no retry policy"
            yield _issue("no_retry", node.pointer, node, message)
        if node.options.timeout_s is None and "timeout_s" not in config:
            message = f"{node.type} node {node.id} has no timeout_s"
            yield _issue("no_timeout", node.pointer, node, message)
    if node.type in graphs.MODEL_TYPES and config.get("max_tokens") is None:
        message = f"{node.type} node {node.id} does not bound its answer with max_tokens"
        yield _issue("llm_no_max_tokens", f"{node.pointer}/config", node, message)
    if node.type == "foreach" and config.get("concurrency", 1) == 1:
        calls = [v.node.id for v in graphs.walk(node.graphs["body"]) if _calls(v.node)]
        if calls:
            message = f"foreach {node.id} calls {', '.join(calls)} one item at a time"
            yield _issue("sequential_calls_in_loop", f"{node.pointer}/config", node, message)
    if node.type == "while" and "max_iterations" not in config:
        message = f"while {node.id} stops only at the default max_iterations"
        yield _issue("while_default_cap", f"{node.pointer}/config", node, message)


def _calls(node: PlanNode) -> bool:
    return node.type in graphs.CALL_TYPES


def _literals(node: PlanNode, value: Any, pointer: str) -> Iterator[HealthIssue]:
    """Literal secrets and plain-HTTP URLs anywhere in a config (nested graphs excluded: their
    nodes are visited on their own)."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield from _literals(node, item, f"{pointer}/{i}")
        return
    if not isinstance(value, Mapping):
        return
    secret_field = _AUTH_SECRETS.get(str(value.get("type")))
    for key, item in value.items():
        if key in node.config.graphs and pointer == f"{node.pointer}/config":
            continue
        here = f"{pointer}/{_escape(str(key))}"
        text = graphs.literal_str(item)
        if text and (key == secret_field or _SECRET_KEY.match(str(key))):
            message = f"{node.id} has a literal secret in {key!r}"
            yield _issue("literal_secret", here, node, message)
        elif text and key in _URL_KEYS and _insecure(text):
            message = f"{node.id} calls {text} over plain http"
            yield _issue("insecure_http", here, node, message)
        else:
            yield from _literals(node, item, here)


def _insecure(url: str) -> bool:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return parts.scheme == "http" and host not in LOOPBACK_HOSTS and not host.startswith("127.")


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")
