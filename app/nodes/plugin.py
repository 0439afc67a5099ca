"""The node factory interface: how every node type, built-in or plug-in, joins a deployment.

A node family is a factory: a callable that takes the process's :class:`NodeResources` and
returns one :class:`NodeDefinition` (or several) pairing a node type (name, config model,
description) with its executor. The built-in families (``app.nodes.basic``, ``branching``,
``loops``, ``composition``, ``http``, ``human``) are factories; so is every plug-in, found
through the ``oxify.nodes`` entry-point group::

    [project.entry-points."oxify.nodes"]
    hello = "oxify_hello:definitions"

Everything a plug-in author needs is importable from here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeAlias

from app.domain.config_checks import ConfigCheck, Finding
from app.domain.node_config import ExpressionStr, NodeConfig, NodeType, TemplateStr
from app.engine.run.context import NodeContext, NodeExecutor
from app.engine.run.outcomes import NodeOutput, Suspend
from app.errors import NodeConfigError, NodeError
from app.nodes.resources import NodeResources

__all__ = [
    "ENTRY_POINT_GROUP",
    "ConfigCheck",
    "ExpressionStr",
    "Finding",
    "NodeConfig",
    "NodeConfigError",
    "NodeContext",
    "NodeDefinition",
    "NodeError",
    "NodeExecutor",
    "NodeFactory",
    "NodeOutput",
    "NodeResources",
    "NodeType",
    "Suspend",
    "TemplateStr",
]

ENTRY_POINT_GROUP = "oxify.nodes"


@dataclass(frozen=True, slots=True)
class NodeDefinition:
    """One node type, the executor that runs its nodes and, optionally, the check that asks
    the outside world about a node's config when a document is validated
    (:mod:`app.domain.config_checks`)."""

    node_type: NodeType
    executor: NodeExecutor
    check: ConfigCheck | None = None


NodeFactory: TypeAlias = Callable[[NodeResources], NodeDefinition | Iterable[NodeDefinition]]
"""Builds a family's definitions from the process's resources; called once, at start."""
