"""Node type → executor, and the node types a deployment knows.

Plug-ins add node types through the ``oxify.nodes`` entry-point group: each entry point names a
callable returning ``(NodeType, executor)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from app.domain.node_types import CORE_NODE_TYPES, NodeType, NodeTypes
from app.engine.ports import NodeExecutor
from app.nodes import basic, branching, composition, loops

ENTRY_POINT_GROUP = "oxify.nodes"


def core_executors() -> dict[str, NodeExecutor]:
    """An executor for every core node type."""
    return {
        "start": basic.StartExecutor(),
        "end": basic.EndExecutor(),
        "transform": basic.TransformExecutor(),
        "set_var": basic.SetVarExecutor(),
        "delay": basic.DelayExecutor(),
        "fail": basic.FailExecutor(),
        "if": branching.IfExecutor(),
        "switch": branching.SwitchExecutor(),
        "foreach": loops.ForeachExecutor(),
        "while": loops.WhileExecutor(),
        "repeat": loops.RepeatExecutor(),
        "try": composition.TryExecutor(),
        "subworkflow": composition.SubworkflowExecutor(),
    }


@dataclass(frozen=True, slots=True)
class Registry:
    """The node types a deployment accepts and the executor of each."""

    node_types: NodeTypes
    executors: Mapping[str, NodeExecutor]

    def with_type(self, node_type: NodeType, executor: NodeExecutor) -> Registry:
        """A registry that also knows ``node_type`` (plug-ins, later built-in families)."""
        return Registry(
            self.node_types.with_types(node_type), {**self.executors, node_type.name: executor}
        )


def core_registry() -> Registry:
    """The built-in node types (no plug-ins)."""
    return Registry(CORE_NODE_TYPES, core_executors())


def load_registry(extra: Mapping[str, tuple[NodeType, NodeExecutor]] | None = None) -> Registry:
    """Core types, then plug-ins from entry points, then ``extra``."""
    registry = core_registry()
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        factory: Any = entry.load()
        node_type, executor = factory()
        registry = registry.with_type(node_type, executor)
    for node_type, executor in (extra or {}).values():
        registry = registry.with_type(node_type, executor)
    return registry
