"""Calls that could be batched or merged: nodes of one graph with no path between them that
call the same model (llm, agent: provider/model), collection (retriever, index:
backend:collection) or host (http, graphql: the host of a literal URL).

Within a graph, the nodes sharing a target are split greedily, in topological order, into
groups where no node reaches another (each node joins the first group it is independent of
all of); groups of one are dropped. Nodes of different graphs (a loop body and its workflow)
are never grouped: their runs do not line up.

Savings, per run of the graph: ``calls_saved`` = group size - 1 (one merged call instead of
many); ``latency_saved_s`` = (size - 1) x the kind's per-call overhead (:data:`OVERHEAD_S`),
an upper bound reached when the calls would run one at a time (``max_concurrency`` 1): with
free slots they already overlap, and the saving is in calls (rate limits, per-call overhead).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal
from urllib.parse import urlsplit

from app.domain.analysis import BatchGroup, BatchingReport
from app.engine.analysis import graphs
from app.engine.compile.plan import Plan, PlanNode

Kind = Literal["model", "collection", "host"]
OVERHEAD_S: Mapping[Kind, float] = {"model": 0.5, "collection": 0.05, "host": 0.1}  # seconds


def assumptions() -> list[str]:
    """The savings' assumptions, as the answer lists them."""
    overheads = ", ".join(f"{kind} {seconds} s" for kind, seconds in OVERHEAD_S.items())
    return [
        "a merged call replaces the group's calls: calls_saved = size - 1 per run of the graph",
        f"each call costs a fixed overhead ({overheads}); latency_saved_s = (size - 1) x "
        "overhead, reached only when the calls run one at a time",
        "only literal targets are grouped (a templated model, collection or URL host is not)",
        "nodes are grouped within one graph: loop bodies and the workflow are separate",
    ]


def batching(plan: Plan) -> BatchingReport:
    """Every group of two or more independent nodes calling the same target."""
    groups = [group for graph in graphs.graphs(plan) for group in _groups(graph)]
    return BatchingReport(groups=groups, assumptions=assumptions())


def target(node: PlanNode) -> tuple[Kind, str] | None:
    """What the node calls, when the document says it literally."""
    config = node.raw_config
    if node.type in graphs.MODEL_TYPES:
        provider, model = (
            graphs.literal_str(config.get("provider")),
            graphs.literal_str(config.get("model")),
        )
        return ("model", f"{provider}/{model}") if provider and model else None
    if node.type in ("retriever", "index"):
        collection = graphs.literal_str(config.get("collection"))
        return ("collection", f"{config.get('backend')}:{collection}") if collection else None
    if node.type in ("http", "graphql"):
        url = graphs.literal_str(config.get("url"))
        host = urlsplit(url).hostname if url else None
        return ("host", host) if host else None
    return None


def _groups(graph: Plan) -> Iterator[BatchGroup]:
    sharing: dict[tuple[Kind, str], list[PlanNode]] = {}
    for node_id in graph.order:
        found = target(graph.nodes[node_id])
        if found is not None:
            sharing.setdefault(found, []).append(graph.nodes[node_id])
    if all(len(nodes) < 2 for nodes in sharing.values()):
        return  # nothing to group: spare the reachability
    reach = graphs.descendants(graph)
    for (kind, name), nodes in sharing.items():
        groups: list[list[PlanNode]] = []
        for node in nodes:
            _place(node, groups, reach)
        for group in groups:
            if len(group) > 1:
                saved = len(group) - 1
                yield BatchGroup(
                    kind=kind,
                    target=name,
                    graph=graph.pointer,
                    node_ids=[node.id for node in group],
                    calls_saved=saved,
                    latency_saved_s=round(saved * OVERHEAD_S[kind], 6),
                )


def _place(node: PlanNode, groups: list[list[PlanNode]], reach: Mapping[str, int]) -> None:
    """Into the first group none of whose nodes it reaches or is reached from, or a new one."""
    for group in groups:
        if all(not _related(node, other, reach) for other in group):
            group.append(node)
            return
    groups.append([node])


def _related(a: PlanNode, b: PlanNode, reach: Mapping[str, int]) -> bool:
    return bool(reach[a.id] >> b.position & 1 or reach[b.id] >> a.position & 1)
