"""What the analyses share: a walk over a plan's graphs, reachability, literal values.

Nested graphs (container bodies, ``try`` blocks, inline sub-workflows) are walked depth first,
each node visited once, with the containers around it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from app.engine.compile.plan import Plan, PlanNode
from app.engine.compile.templates import is_template

MODEL_TYPES = frozenset({"llm", "agent"})
"""Nodes that call a language model (and spend tokens)."""

CALL_TYPES = frozenset({"http", "graphql", "mcp", "retriever", "index"}) | MODEL_TYPES
"""Nodes that call something outside the process (and so can fail, hang or cost)."""

LOOP_TYPES = frozenset({"foreach", "while", "repeat"})
DECISION_TYPES = frozenset({"if", "switch", "try"}) | LOOP_TYPES


@dataclass(frozen=True, slots=True)
class Visit:
    """A node, the graph it is in, the container nodes around it (outermost first), and its
    ``key``: the node key its runs record, less loop indices (``loop.ask`` for ``loop[2].ask``,
    ``guard.try.call`` inside a try block)."""

    node: PlanNode
    graph: Plan
    containers: tuple[PlanNode, ...]
    key: str


def walk(plan: Plan, containers: tuple[PlanNode, ...] = (), prefix: str = "") -> Iterator[Visit]:
    """Every node of ``plan`` and of its nested graphs, in document order, depth first."""
    for node in plan.nodes.values():
        yield Visit(node, plan, containers, prefix + node.id)
        for field, nested in node.graphs.items():
            inner = f"{prefix}{node.id}.{field}." if node.type == "try" else f"{prefix}{node.id}."
            yield from walk(nested, (*containers, node), inner)


_LOOP_INDEX = re.compile(r"\[\d+\]")


def unindexed(node_key: str) -> str:
    """A recorded node key without its loop indices: the :attr:`Visit.key` of its node."""
    return _LOOP_INDEX.sub("", node_key)


def graphs(plan: Plan) -> Iterator[Plan]:
    """``plan`` and every graph nested in it."""
    yield plan
    for node in plan.nodes.values():
        for nested in node.graphs.values():
            yield from graphs(nested)


def descendants(plan: Plan) -> dict[str, int]:
    """For each node of ``plan`` (this graph only), a bitmask of the nodes reachable from it,
    bit ``i`` being the node at position ``i``. Python ints keep 10,000-node graphs cheap."""
    found: dict[str, int] = {}
    for node_id in reversed(plan.order):
        node = plan.nodes[node_id]
        mask = 0
        for j in node.table.leaving(node.position):
            target = plan.nodes[node.table.target[j]]
            mask |= (1 << target.position) | found[target.id]
        found[node_id] = mask
    return found


def literal_str(value: Any) -> str | None:
    """``value`` when it is a string with no template in it, else None."""
    return value if isinstance(value, str) and not is_template(value) else None


_INPUT_REFERENCE = re.compile(r"^\{\{\s*inputs((?:\.[A-Za-z_]\w*)+)\s*\}\}$")


def sized(value: Any, inputs: Mapping[str, Any] | None) -> Any:
    """A literal ``value``, or the input a whole-string ``{{ inputs.a.b }}`` names when
    ``inputs`` has it; None otherwise (the value is only known when the run renders it)."""
    if not isinstance(value, str) or not is_template(value):
        return value
    match = _INPUT_REFERENCE.match(value.strip())
    if match is None or inputs is None:
        return None
    found: Any = inputs
    for key in match.group(1).split(".")[1:]:
        if not isinstance(found, Mapping) or key not in found:
            return None
        found = found[key]
    return found
