"""Static analysis of workflow documents: health, complexity, cost estimate, batching.

The analyses are the engine's pure functions (``app.engine.analysis``); this module finds the
plan (a stored version's or an unsaved document's), and for the estimate the process's price
table and what past runs of the version spent. The analyses run in a worker thread: on a
10,000-node plan each takes tens of milliseconds, too long for the event loop (plans are
read-only, so sharing one with a thread is safe).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from app.domain.analysis import BatchingReport, ComplexityReport, EstimateReport, HealthReport
from app.engine.analysis import batching, complexity, estimate, graphs, health
from app.engine.analysis.estimate import PastUsage
from app.nodes.ai import prices
from app.services.container import Services
from app.store import db, usage

PAST_RUNS = 50  # the most recent completed runs of a version an estimate learns from


async def health_of(services: Services, workflow_id: str, version: int | None) -> HealthReport:
    """A stored version's health (WorkflowNotFound for an unknown workflow or version)."""
    _workflow, plan = await services.workflows.plan_for(workflow_id, version)
    return await asyncio.to_thread(health.health, plan)


async def health_of_document(services: Services, document: dict[str, Any]) -> HealthReport:
    """An unsaved document's health (WorkflowInvalid when it does not plan)."""
    return await asyncio.to_thread(health.health, await services.workflows.plan(document))


async def complexity_of(
    services: Services, workflow_id: str, version: int | None
) -> ComplexityReport:
    _workflow, plan = await services.workflows.plan_for(workflow_id, version)
    return await asyncio.to_thread(complexity.complexity, plan)


async def batching_of(services: Services, workflow_id: str, version: int | None) -> BatchingReport:
    _workflow, plan = await services.workflows.plan_for(workflow_id, version)
    return await asyncio.to_thread(batching.batching, plan)


async def estimate_of(
    services: Services,
    workflow_id: str,
    version: int | None,
    inputs: Mapping[str, Any] | None,
) -> EstimateReport:
    """A stored version's estimate, sized by ``inputs`` and corrected by its past runs."""
    workflow, plan = await services.workflows.plan_for(workflow_id, version)
    async with db.autocommit(services.engine).connect() as conn:
        rows = await usage.node_usage(conn, workflow_id, workflow.version, runs=PAST_RUNS)
    rates = prices.price_table(services.resources).rates
    past = past_usage(rows)
    return await asyncio.to_thread(estimate.estimate, plan, rates, inputs=inputs, past=past)


def past_usage(rows: list[tuple[str, str, dict[str, Any]]]) -> dict[str, list[PastUsage]]:
    """Per node (its key less loop indices), what each run spent on it: the run's rows summed
    (loop iterations are rows of their own). A run with an unpriced call has no cost."""
    tokens: dict[str, dict[str, float]] = defaultdict(dict)
    costs: dict[str, dict[str, float | None]] = defaultdict(dict)
    for execution_id, node_key, used in rows:
        key = graphs.unindexed(node_key)
        tokens[key][execution_id] = tokens[key].get(execution_id, 0.0) + used.get("tokens", 0)
        cost = None if used.get("unpriced_calls") else used.get("cost_usd", 0.0)
        before = costs[key].get(execution_id, 0.0)
        costs[key][execution_id] = None if cost is None or before is None else before + cost
    return {
        key: [PastUsage(tokens=spent, cost_usd=costs[key][run]) for run, spent in runs.items()]
        for key, runs in tokens.items()
    }
