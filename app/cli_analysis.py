"""What `oxify analyze FILE` prints: a document's health, complexity, estimate and batching.

The same reports the API serves (the estimate without past runs: there is no database here),
as text or, with ``--json``, one object ``{"health", "complexity", "estimate", "batching"}``.
"""

from __future__ import annotations

import json
import logging

from app.domain.analysis import (
    BatchingReport,
    ComplexityReport,
    EstimateReport,
    HealthReport,
    Range,
)
from app.engine.analysis import batching, complexity, estimate, health
from app.engine.analysis.estimate import Pricing
from app.engine.compile.plan import Plan
from app.nodes.ai import prices
from app.settings import Settings


def pricing(settings: Settings) -> Pricing:
    """The llm nodes' price table (``OXIFY_LLM_PRICING_FILE`` merged in) as a pricing callable."""
    logger = logging.getLogger("oxify.cli")
    return prices.PriceTable(prices.load_prices(settings.llm_pricing_file), logger).rates


def render(plan: Plan, price: Pricing, *, as_json: bool) -> str:
    """The reports as the API's JSON in one object, or as the text ``oxify analyze`` prints."""
    found = health.health(plan)
    shape = complexity.complexity(plan)
    cost = estimate.estimate(plan, price)
    groups = batching.batching(plan)
    if as_json:
        reports = {"health": found, "complexity": shape, "estimate": cost, "batching": groups}
        dumped = {name: report.model_dump(mode="json") for name, report in reports.items()}
        return json.dumps(dumped, indent=2, ensure_ascii=False)
    return "\n".join([*_health(found), _complexity(shape), *_estimate(cost), *_batching(groups)])


def _health(report: HealthReport) -> list[str]:
    counts = ", ".join(f"{n} {severity}" for severity, n in report.counts.items())
    lines = [f"health: {report.score}/100 ({counts})"]
    for issue in report.issues:
        lines.append(f"  {issue.severity} {issue.code} {issue.pointer}: {issue.message}")
        lines.append(f"    fix: {issue.suggestion}")
    return lines


def _complexity(report: ComplexityReport) -> str:
    return (
        f"complexity: {report.score}/100 ({report.rating}): {report.nodes} nodes, "
        f"{report.edges} edges, depth {report.depth}, width {report.width}, "
        f"{report.decision_points} decision points, cyclomatic {report.cyclomatic}, "
        f"nesting {report.nesting_depth}"
    )


def _estimate(report: EstimateReport) -> list[str]:
    lines = [f"estimate (low / expected / high; prompts counted as {report.tokenizer}):"]
    for node in report.nodes:
        cost = _dollars(node.cost_usd) if node.cost_usd is not None else "no price"
        lines.append(
            f"  {node.node_id} ({node.type} {node.provider}/{node.model}): "
            f"tokens {_count(node.tokens)}; {cost}"
        )
    lines.append(f"  total: tokens {_count(report.tokens)}; {_dollars(report.cost_usd)}")
    if report.unpriced_nodes:
        lines.append(f"  unpriced: {', '.join(report.unpriced_nodes)}")
    return lines


def _batching(report: BatchingReport) -> list[str]:
    lines = ["batching:" if report.groups else "batching: nothing to merge"]
    for group in report.groups:
        where = f" in {group.graph}" if group.graph else ""
        lines.append(
            f"  {group.kind} {group.target}{where}: {', '.join(group.node_ids)} "
            f"(saves {group.calls_saved} calls, up to {group.latency_saved_s} s)"
        )
    return lines


def _count(r: Range) -> str:
    return f"{r.low:,.0f} / {r.expected:,.0f} / {r.high:,.0f}"


def _dollars(r: Range) -> str:
    return f"${r.low:.4f} / ${r.expected:.4f} / ${r.high:.4f}"
