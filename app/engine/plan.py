"""The plan: a validated graph with everything the scheduler needs precomputed.

Built once per distinct document by ``app.engine.graph`` (and cached by content hash), then
shared read-only by every run of that document: typed configs, compiled expressions and
templates, adjacency, topological order and levels, nested plans of container nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.domain.node_types import NodeConfig
from app.domain.workflow import NodeSpec
from app.engine.expressions import Expression
from app.engine.templates import CompiledValue


@dataclass(slots=True, eq=False)
class PlanEdge:
    """An edge of the plan; ``index`` is its position in the document's ``edges``."""

    index: int
    source: str
    target: str
    branch: str | None = None


@dataclass(slots=True, eq=False)
class PlanNode:
    """A node with its typed config and compiled parts.

    ``templates`` holds a compiled value for every config field that is neither an expression,
    a nested graph nor static (only fields present in the document); ``graphs`` holds the nested
    plans of container fields that are set.
    """

    id: str
    spec: NodeSpec
    config: NodeConfig
    pointer: str
    level: int = 0
    order: int = 0
    expressions: dict[str, Expression] = field(default_factory=dict)
    templates: dict[str, CompiledValue] = field(default_factory=dict)
    graphs: dict[str, Plan] = field(default_factory=dict)
    incoming: list[PlanEdge] = field(default_factory=list)
    outgoing: list[PlanEdge] = field(default_factory=list)

    @property
    def type(self) -> str:
        return self.spec.type


@dataclass(slots=True, eq=False)
class Plan:
    """A validated graph (a workflow, or the body of a container node).

    ``order`` is a Kahn topological order (ties broken by document order, so it is
    deterministic); ``levels[i]`` lists the nodes whose longest path from a root has ``i`` edges.
    ``node_count`` counts nested nodes too.
    """

    nodes: dict[str, PlanNode]
    edges: list[PlanEdge]
    order: list[str]
    levels: list[list[str]]
    pointer: str = ""
    outputs: CompiledValue | None = None
    input_schema: dict[str, Any] | None = None
    content_hash: str = ""
    node_count: int = 0
    name: str = ""

    @property
    def roots(self) -> list[str]:
        """Nodes with no incoming edge, in document order."""
        return [n.id for n in self.nodes.values() if not n.incoming]

    @property
    def end_nodes(self) -> list[str]:
        """``end`` nodes in topological order."""
        return [node_id for node_id in self.order if self.nodes[node_id].type == "end"]
