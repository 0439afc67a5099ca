"""The edges of one graph: their checks, the cycles they close, and the plan they make.

Functions here see a graph's parts after its nodes were checked (``checked.configs[i]`` is None
where a node failed) and report problems through ``report(pointer, message, code)``. A graph whose
edges are all fine, the common case, is checked in bulk with C-speed passes and only looked at
edge by edge when something is off.
"""

from __future__ import annotations

import collections
import itertools
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from app.domain.node_types import NodeConfig
from app.engine.compile import topology
from app.engine.compile.plan import CompiledParts, GraphTable, Plan, PlanNode
from app.engine.compile.shape import GraphParts
from app.engine.compile.templates import CompiledValue
from app.engine.compile.validation_errors import join

MAX_CYCLES_REPORTED = 20  # cycles named per graph; fixing them reveals any others
MAX_CYCLE_NAMES = 30  # node ids written out in one cycle message

Report = Callable[[str, str, str], None]  # pointer, message, code


@dataclass(slots=True)
class Checked:
    """Per node position, what passed its checks: the typed config (None where the node's type
    or config is wrong) and the compiled parts."""

    configs: list[NodeConfig | None]
    parts: list[CompiledParts]


@dataclass(slots=True)
class Wiring:
    """The edges that passed their checks, as parallel lists, and the adjacency they make.

    Edge ``k`` here is edge ``kept[k]`` of the document; the edges leaving node ``p`` are
    ``out_edges[out_start[p]:out_start[p + 1]]`` and those entering it
    ``in_edges[in_start[p]:in_start[p + 1]]`` (values are ``k``, in document order).
    """

    kept: list[int]  # index in the document's edges
    heads: list[int]  # source node position
    tails: list[int]  # target node position
    branches: list[str | None]
    complete: bool = True  # every edge names nodes of the graph
    out_start: list[int] = field(default_factory=list)
    out_edges: list[int] = field(default_factory=list)
    in_start: list[int] = field(default_factory=list)
    in_edges: list[int] = field(default_factory=list)

    def successors(self) -> list[list[int]]:
        """Target positions per source position (one entry per edge)."""
        targets = list(map(self.tails.__getitem__, self.out_edges))
        return list(map(targets.__getitem__, map(slice, self.out_start, self.out_start[1:])))


def wire(parts: GraphParts, index: dict[str, int], checked: Checked, report: Report) -> Wiring:
    """Check every edge; the adjacency of those that hold up.

    Reports edges to unknown nodes, self-loops, duplicates (same from, to and branch), edges
    into a ``start`` node and branches their source cannot take, in edge order.
    """
    wiring = _bulk(parts, index) if parts.intact else None
    if wiring is None:
        wiring = _one_by_one(parts, index, checked, report)
    else:
        for j, branch in enumerate(wiring.branches):
            if branch is not None:
                pointer = f"{parts.pointer}/edges/{j}/branch"
                _check_branch(parts, checked, wiring.heads[j], branch, pointer, report)
    size = len(parts.ids)
    wiring.out_start, wiring.out_edges = _grouped(wiring.heads, size)
    wiring.in_start, wiring.in_edges = _grouped(wiring.tails, size)
    return wiring


def topological_order(wiring: Wiring, size: int) -> list[int]:
    """Kahn's order of the node positions (lowest position first among the ready ones).

    Documents are usually written in dependency order; when every edge runs forward, that
    order is the document order itself, and the heap is not needed to find it.
    """
    if all(map(operator.lt, wiring.heads, wiring.tails)):
        return list(range(size))
    indegree = list(map(operator.sub, wiring.in_start[1:], wiring.in_start))
    return topology.kahn_order(wiring.successors(), indegree)


def report_cycles(parts: GraphParts, wiring: Wiring, order: list[int], report: Report) -> None:
    """Name the cycles that kept the nodes missing from ``order`` out of it (Kahn's leftovers).

    Each is reported at the edge that closes it, with its nodes in order: "cycle: a → b → a".
    """
    placed = [False] * len(parts.ids)
    for i in order:
        placed[i] = True
    stuck = [i for i, done in enumerate(placed) if not done]
    first_edge: dict[tuple[int, int], int] = {}
    for j, head, tail in zip(wiring.kept, wiring.heads, wiring.tails, strict=True):
        first_edge.setdefault((head, tail), j)
    ids = cast(list[str], parts.ids)
    for cycle in topology.find_cycles(wiring.successors(), stuck, MAX_CYCLES_REPORTED):
        names = [ids[i] for i in cycle]
        if len(names) > MAX_CYCLE_NAMES:
            hidden = len(names) - MAX_CYCLE_NAMES + 10
            names = [*names[:20], f"… ({hidden} more)", *names[-10:]]
        closing = first_edge[(cycle[-1], cycle[0])]
        message = "cycle: " + " → ".join([*names, ids[cycle[0]]])
        report(join(parts.pointer, "edges", closing), message, "cycle")


def assemble(
    parts: GraphParts,
    checked: Checked,
    wiring: Wiring,
    order: list[int],
    outputs: CompiledValue | None,
) -> Plan:
    """The plan of a graph that passed every check (so every edge was kept)."""
    ids = cast(list[str], parts.ids)
    size = len(ids)
    rank = sorted(range(size), key=order.__getitem__)  # place in ``order``, by position
    table = GraphTable(
        pointer=parts.pointer,
        rank=rank,
        source=list(map(ids.__getitem__, wiring.heads)),
        target=list(map(ids.__getitem__, wiring.tails)),
        branch=wiring.branches,
        out_start=wiring.out_start,
        out_edges=wiring.out_edges,
        in_start=wiring.in_start,
        in_edges=wiring.in_edges,
    )
    heads, tails = wiring.heads, wiring.tails
    # Edges by their source's rank: usually already so (documents in dependency order).
    by_source = sorted(wiring.out_edges, key=list(map(rank.__getitem__, heads)).__getitem__)
    pairs = zip(map(heads.__getitem__, by_source), map(tails.__getitem__, by_source), strict=True)
    level = topology.longest_path_levels(size, pairs)
    levels: list[list[str]] = [[] for _ in range(max(level, default=-1) + 1)]
    for node_id, node_level in zip(ids, level, strict=True):
        levels[node_level].append(node_id)
    nodes = map(
        PlanNode,
        ids,
        cast(list[str], parts.types),
        cast(list[NodeConfig], checked.configs),
        parts.options,
        range(size),
        level,
        itertools.repeat(table),
        cast(list[dict[str, Any]], parts.configs),
        checked.parts,
    )
    containers = filter(None, map(operator.attrgetter("graphs"), checked.parts))
    nested = sum(plan.node_count for graphs in containers for plan in graphs.values())
    return Plan(
        nodes=dict(zip(ids, nodes, strict=True)),
        table=table,
        order=list(map(ids.__getitem__, order)),
        levels=levels,
        pointer=parts.pointer,
        outputs=outputs,
        node_count=size + nested,
    )


def _grouped(keys: list[int], size: int) -> tuple[list[int], list[int]]:
    """Positions of ``keys`` grouped by key (stable), and where each key's group starts."""
    members = sorted(range(len(keys)), key=keys.__getitem__)
    counts = collections.Counter(keys)
    start = [0, *itertools.accumulate(map(counts.get, range(size), itertools.repeat(0)))]
    return start, members


def _bulk(parts: GraphParts, index: dict[str, int]) -> Wiring | None:
    """All edges at once, or None when any of them needs a closer look."""
    heads = list(map(index.get, cast(list[str], parts.sources)))
    tails = list(map(index.get, cast(list[str], parts.targets)))
    branches = parts.branches
    if None in heads or None in tails or any(map(operator.eq, heads, tails)):
        return None
    if len(set(zip(heads, tails, branches, strict=True))) < len(branches):
        return None
    starts = {i for i, node_type in enumerate(parts.types) if node_type == "start"}
    if starts and not starts.isdisjoint(tails):
        return None
    kept = list(range(len(branches)))
    return Wiring(kept, cast(list[int], heads), cast(list[int], tails), branches)


def _one_by_one(
    parts: GraphParts, index: dict[str, int], checked: Checked, report: Report
) -> Wiring:
    """Edge by edge, reporting each problem; edges with one are left out."""
    wiring = Wiring([], [], [], [])
    seen: dict[tuple[int, int, str | None], int] = {}
    types, base = parts.types, parts.pointer
    for j, (source, target, branch) in enumerate(
        zip(parts.sources, parts.targets, parts.branches, strict=True)
    ):
        if source is None or target is None:  # the edge has the wrong shape: already reported
            continue
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
            _check_branch(parts, checked, s, branch, f"{base}/edges/{j}/branch", report)
        wiring.kept.append(j)
        wiring.heads.append(s)
        wiring.tails.append(t)
        wiring.branches.append(branch)
    return wiring


def _check_branch(
    parts: GraphParts, checked: Checked, source: int, branch: str, pointer: str, report: Report
) -> None:
    config = checked.configs[source]
    if config is None:  # its type or config is wrong: already reported
        return
    branches = config.branches()
    node_id, node_type = parts.ids[source], parts.types[source]
    if branches is None:
        message = f"node {node_id!r} ({node_type}) does not branch; remove 'branch'"
        report(pointer, message, "invalid_branch")
    elif branch not in branches:
        valid = ", ".join(repr(b) for b in sorted(branches))
        message = (
            f"node {node_id!r} ({node_type}) cannot take branch {branch!r} (its branches: {valid})"
        )
        report(pointer, message, "invalid_branch")
