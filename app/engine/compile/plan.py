"""The plan: a validated graph with everything the scheduler needs precomputed.

Built once per distinct document by ``app.engine.compile.graph`` (and cached by content hash), then
shared read-only by every run of that document: typed configs, compiled expressions and
templates, adjacency, topological order and levels, nested plans of container nodes.

A plan lives as long as its cache entry and every full pass of the garbage collector walks it,
so it holds few objects per node, each with few references: what a graph's nodes share is in
one :class:`GraphTable` (edges as parallel lists, no object per edge: :class:`PlanEdge` views
are made on demand), nodes with nothing compiled share :data:`NO_PARTS`, and nodes with
default options share :data:`DEFAULT_OPTIONS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from app.domain.node_types import NodeConfig
from app.domain.workflow import RetryPolicy
from app.engine.compile import config_fields
from app.engine.compile.expressions import Expression
from app.engine.compile.templates import CompiledValue

EMPTY: Mapping[str, Any] = MappingProxyType({})
"""The one empty mapping, shared wherever a node has no compiled part of a kind."""


@dataclass(frozen=True, slots=True)
class NodeOptions:
    """How a node runs besides its config: the node spec's fields other than id, type, config.

    The defaults are :class:`~app.domain.workflow.NodeSpec`'s (a test keeps them equal).
    """

    name: str | None = None
    retry: RetryPolicy | None = None
    timeout_s: float | None = None  # seconds
    critical: bool = True
    continue_on_error: bool = False


DEFAULT_OPTIONS = NodeOptions()


@dataclass(slots=True, eq=False)
class PlanEdge:
    """An edge of the plan; ``index`` is its position in the document's ``edges``."""

    index: int
    source: str
    target: str
    branch: str | None = None


@dataclass(slots=True, eq=False)
class GraphTable:
    """What the nodes of one graph share: the graph's pointer, each node's place in the order,
    and the edges as parallel lists indexed by document position, grouped by node.

    The edges leaving the node at position ``p`` are
    ``out_edges[out_start[p]:out_start[p + 1]]`` and those entering it
    ``in_edges[in_start[p]:in_start[p + 1]]``, each group in document order.
    """

    pointer: str
    rank: list[int]  # by node position: its place in the plan's ``order``
    source: list[str]
    target: list[str]
    branch: list[str | None]
    out_start: list[int]
    out_edges: list[int]
    in_start: list[int]
    in_edges: list[int]

    def leaving(self, position: int) -> list[int]:
        """The edges whose source is the node at ``position``, in document order."""
        return self.out_edges[self.out_start[position] : self.out_start[position + 1]]

    def entering(self, position: int) -> list[int]:
        """The edges whose target is the node at ``position``, in document order."""
        return self.in_edges[self.in_start[position] : self.in_start[position + 1]]

    def edge(self, j: int) -> PlanEdge:
        """Edge ``j`` as an object (a plan keeps every edge, so ``j`` is its document index)."""
        return PlanEdge(j, self.source[j], self.target[j], self.branch[j])


@dataclass(frozen=True, slots=True)
class CompiledParts:
    """What planning compiled in a node's config: the value of every field that holds a
    template (the others are read from the config), the conditions, the nested plans of the
    container fields that are set."""

    templated: Mapping[str, CompiledValue]
    expressions: Mapping[str, Expression]
    graphs: Mapping[str, Plan]


NO_PARTS = CompiledParts(EMPTY, EMPTY, EMPTY)
"""Shared by every node with nothing compiled (no template, condition or nested graph)."""


@dataclass(slots=True, eq=False)
class PlanNode:
    """A node with its typed config and compiled parts.

    ``position`` is the node's index in its graph's ``nodes``; ``table`` is shared by the
    nodes of that graph.
    """

    id: str
    type: str
    config: NodeConfig
    options: NodeOptions
    position: int
    level: int
    table: GraphTable = field(repr=False)
    raw_config: Mapping[str, Any] = field(repr=False)  # a copy: never the caller's document
    parts: CompiledParts = field(repr=False)

    @property
    def order(self) -> int:
        """The node's place in its plan's ``order``."""
        return self.table.rank[self.position]

    @property
    def pointer(self) -> str:
        """The node's JSON pointer in its document (``/nodes/3``, ``/nodes/1/config/body/...``)."""
        return f"{self.table.pointer}/nodes/{self.position}"

    @property
    def templated(self) -> Mapping[str, CompiledValue]:
        """The compiled value of every config field that holds a template."""
        return self.parts.templated

    @property
    def expressions(self) -> Mapping[str, Expression]:
        """The compiled condition of every expression field."""
        return self.parts.expressions

    @property
    def graphs(self) -> Mapping[str, Plan]:
        """The nested plans of the container fields that are set."""
        return self.parts.graphs

    @property
    def incoming(self) -> list[PlanEdge]:
        """Edges into this node, in document order."""
        return [self.table.edge(j) for j in self.table.entering(self.position)]

    @property
    def outgoing(self) -> list[PlanEdge]:
        """Edges out of this node, in document order."""
        return [self.table.edge(j) for j in self.table.leaving(self.position)]

    @property
    def sources(self) -> list[str]:
        """Ids of the nodes this one depends on (one per incoming edge), without edge objects."""
        return list(map(self.table.source.__getitem__, self.table.entering(self.position)))

    @property
    def templates(self) -> dict[str, CompiledValue]:
        """Every template field the document set (only those), constant ones included.

        Built on each call: the plan keeps only the fields that hold a template; a constant
        field renders to the value the document gave.
        """
        table = config_fields.field_table(type(self.config))
        compiled: dict[str, CompiledValue] = {}
        for key, value in self.raw_config.items():
            entry = table.get(key) or config_fields.extra_field(key)
            if entry.kind == "template":
                found = self.templated.get(entry.name)
                if found is None:
                    found = CompiledValue(value, None, frozenset())
                compiled[entry.name] = found
        return compiled


@dataclass(slots=True, eq=False)
class Plan:
    """A validated graph (a workflow, or the body of a container node).

    ``order`` is a Kahn topological order (ties broken by document order, so it is
    deterministic); ``levels[i]`` lists the nodes whose longest path from a root has ``i`` edges.
    ``nodes`` is in document order. ``node_count`` counts nested nodes too.
    """

    nodes: dict[str, PlanNode]
    table: GraphTable
    order: list[str]
    levels: list[list[str]]
    pointer: str = ""
    outputs: CompiledValue | None = None
    input_schema: dict[str, Any] | None = None
    content_hash: str = ""
    node_count: int = 0
    name: str = ""

    @property
    def edges(self) -> list[PlanEdge]:
        """Every edge, in document order (made on each call)."""
        return [self.table.edge(j) for j in range(len(self.table.source))]

    @property
    def roots(self) -> list[str]:
        """Nodes with no incoming edge, in document order."""
        start = self.table.in_start
        return [n.id for n in self.nodes.values() if start[n.position] == start[n.position + 1]]

    @property
    def end_nodes(self) -> list[str]:
        """``end`` nodes in topological order."""
        return [node_id for node_id in self.order if self.nodes[node_id].type == "end"]
