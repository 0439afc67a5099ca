"""How complex a planned document is: sizes, shape, decisions, cyclomatic complexity, a score.

Cyclomatic complexity is McCabe's ``E - N + 2P`` summed over every graph (the workflow and each
container body), ``P`` being a graph's weakly connected components, plus one for each loop body
(its implicit back edge) and one for each ``try`` with a ``catch`` (the error path). A graph's
``E - N + P`` is its cycle rank (never negative), so the total is at least the number of graphs.

Score (0 trivial, 100 very complex)::

    score = min(100, nodes // 10 + 2 * decision_points + (cyclomatic - graphs) + 5 * nesting_depth)

rated ``simple`` below 20, ``moderate`` below 50, else ``complex``.
"""

from __future__ import annotations

from app.domain.analysis import ComplexityReport
from app.engine.analysis import graphs
from app.engine.compile.plan import Plan

SIMPLE_BELOW = 20
MODERATE_BELOW = 50


def complexity(plan: Plan) -> ComplexityReport:
    """The counts and the score of the module docstring."""
    nodes = edges = graph_count = cyclomatic = 0
    for graph in graphs.graphs(plan):
        n, e = len(graph.nodes), len(graph.table.source)
        nodes, edges, graph_count = nodes + n, edges + e, graph_count + 1
        cyclomatic += e - n + 2 * components(graph)
    decisions = nesting = 0
    for visit in graphs.walk(plan):
        nesting = max(nesting, len(visit.containers))
        kind = visit.node.type
        decisions += kind in graphs.DECISION_TYPES
        cyclomatic += kind in graphs.LOOP_TYPES or (kind == "try" and "catch" in visit.node.graphs)
    score = min(100, nodes // 10 + 2 * decisions + (cyclomatic - graph_count) + 5 * nesting)
    rating = (
        "simple" if score < SIMPLE_BELOW else "moderate" if score < MODERATE_BELOW else "complex"
    )
    return ComplexityReport(
        nodes=nodes,
        edges=edges,
        graphs=graph_count,
        depth=len(plan.levels),
        width=max((len(level) for level in plan.levels), default=0),
        decision_points=decisions,
        cyclomatic=cyclomatic,
        nesting_depth=nesting,
        score=score,
        rating=rating,
    )


def components(graph: Plan) -> int:
    """The weakly connected components of one graph (its nested graphs aside)."""
    parent = list(range(len(graph.nodes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    table = graph.table
    for source, target in zip(table.source, table.target, strict=True):
        a, b = root(graph.nodes[source].position), root(graph.nodes[target].position)
        parent[a] = b
    return sum(1 for i in range(len(parent)) if root(i) == i)
