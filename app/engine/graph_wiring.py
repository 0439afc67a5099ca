"""The edges of one graph: their checks, the cycles they close, and the plan they make.

Functions here see a graph's parts after its nodes were checked (``planned[i]`` is None where a
node failed) and report problems through ``report(pointer, message, code)``. A graph whose
edges are all fine, the common case, is checked in bulk with C-speed passes and only looked at
edge by edge when something is off.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from app.engine import topology
from app.engine.graph_shape import EdgeShape, GraphParts
from app.engine.plan import Plan, PlanEdge, PlanNode
from app.engine.templates import CompiledValue
from app.engine.validation_errors import join

MAX_CYCLES_REPORTED = 20  # cycles named per graph; fixing them reveals any others
MAX_CYCLE_NAMES = 30  # node ids written out in one cycle message

Report = Callable[[str, str, str], None]  # pointer, message, code


@dataclass(slots=True)
class Wiring:
    """The edges that passed their checks, as parallel lists, and the adjacency they make."""

    kept: list[int]  # index in the document's edges
    heads: list[int]  # source node position
    tails: list[int]  # target node position
    branches: list[str | None]
    complete: bool = True  # every edge names nodes of the graph
    successors: list[list[int]] = field(default_factory=list)
    indegree: list[int] = field(default_factory=list)


def wire(
    parts: GraphParts, index: dict[str, int], planned: list[PlanNode | None], report: Report
) -> Wiring:
    """Check every edge; the adjacency of those that hold up.

    Reports edges to unknown nodes, self-loops, duplicates (same from, to and branch), edges
    into a ``start`` node and branches their source cannot take, in edge order.
    """
    wiring = _bulk(parts, index) if parts.intact else None
    if wiring is None:
        wiring = _one_by_one(parts, index, planned, report)
    else:
        for j, branch in enumerate(wiring.branches):
            if branch is not None:
                pointer = f"{parts.pointer}/edges/{j}/branch"
                _check_branch(planned[wiring.heads[j]], branch, pointer, report)
    successors: list[list[int]] = [[] for _ in planned]
    indegree = [0] * len(planned)
    for head, tail in zip(wiring.heads, wiring.tails, strict=True):
        successors[head].append(tail)
        indegree[tail] += 1
    wiring.successors, wiring.indegree = successors, indegree
    return wiring


def report_cycles(parts: GraphParts, wiring: Wiring, order: list[int], report: Report) -> None:
    """Name the cycles that kept the nodes missing from ``order`` out of it (Kahn's leftovers).

    Each is reported at the edge that closes it, with its nodes in order: "cycle: a → b → a".
    """
    placed = [False] * len(parts.nodes)
    for i in order:
        placed[i] = True
    stuck = [i for i, done in enumerate(placed) if not done]
    first_edge: dict[tuple[int, int], int] = {}
    for j, head, tail in zip(wiring.kept, wiring.heads, wiring.tails, strict=True):
        first_edge.setdefault((head, tail), j)
    ids = cast(list[str], parts.ids)
    for cycle in topology.find_cycles(wiring.successors, stuck, MAX_CYCLES_REPORTED):
        names = [ids[i] for i in cycle]
        if len(names) > MAX_CYCLE_NAMES:
            hidden = len(names) - MAX_CYCLE_NAMES + 10
            names = [*names[:20], f"… ({hidden} more)", *names[-10:]]
        closing = first_edge[(cycle[-1], cycle[0])]
        message = "cycle: " + " → ".join([*names, ids[cycle[0]]])
        report(join(parts.pointer, "edges", closing), message, "cycle")


def assemble(
    parts: GraphParts,
    planned: list[PlanNode],
    wiring: Wiring,
    order: list[int],
    outputs: CompiledValue | None,
) -> Plan:
    """The plan of a graph that passed every check: adjacency, order and levels filled in."""
    ids = [node.id for node in planned]
    sources = [ids[head] for head in wiring.heads]
    targets = [ids[tail] for tail in wiring.tails]
    edges = list(map(PlanEdge, wiring.kept, sources, targets, wiring.branches))
    for edge, head, tail in zip(edges, wiring.heads, wiring.tails, strict=True):
        planned[head].outgoing.append(edge)
        planned[tail].incoming.append(edge)
    level = topology.longest_path_levels(order, wiring.successors)
    levels: list[list[str]] = [[] for _ in range(max(level, default=-1) + 1)]
    nested = 0
    for node, node_level in zip(planned, level, strict=True):
        node.level = node_level
        levels[node_level].append(node.id)
        if node.graphs:
            nested += sum(plan.node_count for plan in node.graphs.values())
    for position, i in enumerate(order):
        planned[i].order = position
    return Plan(
        nodes=dict(zip(ids, planned, strict=True)),
        edges=edges,
        order=[ids[i] for i in order],
        levels=levels,
        pointer=parts.pointer,
        outputs=outputs,
        node_count=len(planned) + nested,
    )


def _bulk(parts: GraphParts, index: dict[str, int]) -> Wiring | None:
    """All edges at once, or None when any of them needs a closer look."""
    edges = cast(list[EdgeShape], parts.edges)
    heads = list(map(index.get, [edge["from"] for edge in edges]))
    tails = list(map(index.get, [edge["to"] for edge in edges]))
    branches = [edge.get("branch") for edge in edges]
    if None in heads or None in tails or any(map(operator.eq, heads, tails)):
        return None
    if len(set(zip(heads, tails, branches, strict=True))) < len(edges):
        return None
    starts = {i for i, node_type in enumerate(parts.types) if node_type == "start"}
    if starts and not starts.isdisjoint(tails):
        return None
    kept = list(range(len(edges)))
    return Wiring(kept, cast(list[int], heads), cast(list[int], tails), branches)


def _one_by_one(
    parts: GraphParts, index: dict[str, int], planned: list[PlanNode | None], report: Report
) -> Wiring:
    """Edge by edge, reporting each problem; edges with one are left out."""
    wiring = Wiring([], [], [], [])
    seen: dict[tuple[int, int, str | None], int] = {}
    types, base = parts.types, parts.pointer
    for j, edge in enumerate(parts.edges):
        if edge is None:
            continue
        source, target, branch = edge["from"], edge["to"], edge.get("branch")
        s, t = index.get(source), index.get(target)
        if s is None or t is None:
            wiring.complete = False
            for key, node_id, unknown in (("from", source, s is None), ("to", target, t is None)):
                if unknown:
                    message = f"no node {node_id!r} in this graph"
                    report(join(base, "edges", j, key), message, "unknown_node")
            continue
        if s == t:
            report(f"{base}/edges/{j}", f"edge from {source!r} to itself", "self_loop")
            continue
        first = seen.setdefault((s, t, branch), j)
        if first != j:
            message = f"duplicate edge (same as {base}/edges/{first})"
            report(f"{base}/edges/{j}", message, "duplicate_edge")
            continue
        if types[t] == "start":
            message = f"start node {target!r} cannot have incoming edges"
            report(f"{base}/edges/{j}/to", message, "start_has_incoming")
        if branch is not None:
            _check_branch(planned[s], branch, f"{base}/edges/{j}/branch", report)
        wiring.kept.append(j)
        wiring.heads.append(s)
        wiring.tails.append(t)
        wiring.branches.append(branch)
    return wiring


def _check_branch(source: PlanNode | None, branch: str, pointer: str, report: Report) -> None:
    if source is None:  # its type or config is wrong: already reported
        return
    branches = source.config.branches()
    if branches is None:
        message = f"node {source.id!r} ({source.type}) does not branch; remove 'branch'"
        report(pointer, message, "invalid_branch")
    elif branch not in branches:
        valid = ", ".join(repr(b) for b in sorted(branches))
        message = (
            f"node {source.id!r} ({source.type}) cannot take branch {branch!r}"
            f" (its branches: {valid})"
        )
        report(pointer, message, "invalid_branch")
