"""Node type → executor, and the node types a deployment knows.

Plug-ins add node types through the ``oxify.nodes`` entry-point group: each entry point names a
callable returning ``(NodeType, executor)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import httpx

from app.domain.node_types import CORE_NODE_TYPES, NodeType, NodeTypes
from app.engine.run.context import NodeExecutor
from app.nodes import basic, branching, composition, http, human, loops

ENTRY_POINT_GROUP = "oxify.nodes"


def core_executors(http_client: httpx.AsyncClient | None = None) -> dict[str, NodeExecutor]:
    """An executor for every core node type.

    ``http_client`` is the one client every ``http`` node shares (the composition root owns and
    closes it); without one, each ``http`` node execution opens a short-lived client of its own.
    """
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
        "http": http.HttpExecutor(http_client),
        "approval": human.HumanExecutor(),
        "form": human.HumanExecutor(),
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


def core_registry(http_client: httpx.AsyncClient | None = None) -> Registry:
    """The built-in node types (no plug-ins); ``http_client`` as for ``core_executors``."""
    return Registry(CORE_NODE_TYPES, core_executors(http_client))


def load_registry(
    extra: Mapping[str, tuple[NodeType, NodeExecutor]] | None = None,
    *,
    http_client: httpx.AsyncClient | None = None,
) -> Registry:
    """Core types, then plug-ins from entry points, then ``extra``."""
    registry = core_registry(http_client)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        factory: Any = entry.load()
        node_type, executor = factory()
        registry = registry.with_type(node_type, executor)
    for node_type, executor in (extra or {}).values():
        registry = registry.with_type(node_type, executor)
    return registry
