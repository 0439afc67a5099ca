"""The node types a deployment knows and the executor of each, built through node factories.

Built-in families and plug-ins join the same way: each factory (:data:`~app.nodes.plugin.
NodeFactory`) is called with the process's :class:`~app.nodes.resources.NodeResources` and
returns node definitions. Plug-ins are the factories the ``oxify.nodes`` entry-point group names.
A plug-in that cannot be imported, whose factory raises or returns something other than
definitions, or that adds a type already known is logged by name and skipped: a broken plug-in
never keeps the service from starting. A broken built-in family is a bug and raises.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata

from app.domain.config_checks import ConfigCheck
from app.domain.node_config import NodeConfig, NodeType, NodeTypes
from app.domain.views import NodeTypeInfo, NodeTypeList
from app.engine.run.context import NodeExecutor
from app.nodes import basic, branching, composition, graphql, http, human, llm, loops, mcp_node
from app.nodes.agent import node as agent
from app.nodes.code import nodes as code
from app.nodes.plugin import ENTRY_POINT_GROUP, NodeDefinition, NodeFactory
from app.nodes.resources import LOGGER_NAME, NodeResources
from app.nodes.retrieval import nodes as retrieval

log = logging.getLogger(LOGGER_NAME)

BUILTIN = "builtin"
OXIFY_DISTRIBUTION = "oxify"
NOT_INSTALLED = "(not installed)"
MAX_TYPE_NAME = 64  # characters; a document's node `type` is at most this long

BUILTIN_FACTORIES: tuple[NodeFactory, ...] = (
    basic.definitions,
    branching.definitions,
    loops.definitions,
    composition.definitions,
    http.definitions,
    graphql.definitions,
    human.definitions,
    llm.definitions,
    retrieval.definitions,
    mcp_node.definitions,
    code.definitions,
    agent.definitions,
)


class DefinitionsInvalid(TypeError):
    """A factory returned something that is not node definitions."""


@dataclass(frozen=True, slots=True)
class NodeOrigin:
    """Where a node type comes from: ``builtin`` or a distribution, and its version."""

    source: str
    version: str


IN_PROCESS = NodeOrigin("in-process", NOT_INSTALLED)


@dataclass(frozen=True, slots=True)
class Registry:
    """The node types a deployment accepts, the executor of each, where each comes from, and
    the config checks of the types that have one."""

    node_types: NodeTypes = field(default_factory=NodeTypes)
    executors: Mapping[str, NodeExecutor] = field(default_factory=dict)
    origins: Mapping[str, NodeOrigin] = field(default_factory=dict)
    checks: Mapping[str, ConfigCheck] = field(default_factory=dict)

    def with_definitions(
        self, definitions: Sequence[NodeDefinition], origin: NodeOrigin
    ) -> Registry:
        """A registry that also knows ``definitions``; a name already known (or given twice)
        is a ValueError naming it, and nothing is added."""
        for i, definition in enumerate(definitions):
            name = definition.node_type.name
            if name in self.origins:
                known = self.origins[name].source
                raise ValueError(f"node type {name!r} is already known ({known})")
            if any(d.node_type.name == name for d in definitions[:i]):
                raise ValueError(f"node type {name!r} is defined twice")
        return Registry(
            self.node_types.with_types(*(d.node_type for d in definitions)),
            {**self.executors, **{d.node_type.name: d.executor for d in definitions}},
            {**self.origins, **dict.fromkeys((d.node_type.name for d in definitions), origin)},
            {**self.checks, **{d.node_type.name: d.check for d in definitions if d.check}},
        )

    def with_type(
        self, node_type: NodeType, executor: NodeExecutor, origin: NodeOrigin | None = None
    ) -> Registry:
        """A registry that also knows one type, registered by code in this process (tests, an
        embedding application) unless ``origin`` says otherwise."""
        return self.with_definitions([NodeDefinition(node_type, executor)], origin or IN_PROCESS)

    def catalog(self) -> NodeTypeList:
        """Every type with its origin and config schema, sorted by name (``GET /v1/node-types``)."""
        items = [
            NodeTypeInfo(
                type=name,
                source=self.origins[name].source,
                version=self.origins[name].version,
                description=self.node_types[name].description,
                config_schema=self.node_types[name].config.model_json_schema(by_alias=True),
            )
            for name in sorted(self.node_types)
        ]
        return NodeTypeList(items=items)


def installed_version(distribution: str) -> str:
    """The installed version of ``distribution`` (a source tree run uninstalled has none)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return NOT_INSTALLED


def build(factory: NodeFactory, resources: NodeResources) -> list[NodeDefinition]:
    """Call ``factory`` and check what it returned (one definition or an iterable of them)."""
    made = factory(resources)
    items = [made] if isinstance(made, NodeDefinition) else made
    if isinstance(items, str | bytes) or not isinstance(items, Iterable):
        raise DefinitionsInvalid(f"returned {_excerpt(made)}, not NodeDefinitions")
    definitions = list(items)
    for item in definitions:
        problem = _problem(item)
        if problem is not None:
            raise DefinitionsInvalid(f"returned {_excerpt(item)}: {problem}")
    return definitions


def core_registry(resources: NodeResources) -> Registry:
    """The built-in node types (no plug-ins), from the built-in families' factories."""
    origin = NodeOrigin(BUILTIN, installed_version(OXIFY_DISTRIBUTION))
    registry = Registry()
    for factory in BUILTIN_FACTORIES:
        registry = registry.with_definitions(build(factory, resources), origin)
    return registry


def load_registry(resources: NodeResources) -> Registry:
    """The built-in node types, then every plug-in that loads (see the module docstring)."""
    registry = core_registry(resources)
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        registry = with_plugin(registry, entry, resources)
    return registry


def with_plugin(
    registry: Registry, entry: metadata.EntryPoint, resources: NodeResources
) -> Registry:
    """``registry`` with the plug-in ``entry`` names; unchanged (and logged) when it is broken."""
    dist = entry.dist
    origin = NodeOrigin(dist.name, dist.version) if dist else NodeOrigin(entry.value, NOT_INSTALLED)
    where = f"node plug-in {entry.name!r} (distribution {origin.source!r} {origin.version})"
    try:
        factory = entry.load()
    except Exception as exc:
        log.error("%s: could not be imported; skipped: %s", where, _why(exc), exc_info=True)
        return registry
    try:
        definitions = build(factory, resources.scoped(entry.name))
    except DefinitionsInvalid as exc:
        log.error("%s: its factory %s; skipped", where, exc)
        return registry
    except Exception as exc:
        log.error("%s: its factory raised; skipped: %s", where, _why(exc), exc_info=True)
        return registry
    try:
        return registry.with_definitions(definitions, origin)
    except ValueError as exc:
        log.error("%s: %s; skipped", where, exc)
        return registry


def _problem(item: object) -> str | None:
    if not isinstance(item, NodeDefinition):
        return "not a NodeDefinition"
    node_type = item.node_type
    if not isinstance(node_type, NodeType):
        return "its node_type is not a NodeType"
    if not 1 <= len(node_type.name) <= MAX_TYPE_NAME:
        return f"a node type's name must be 1 to {MAX_TYPE_NAME} characters"
    if not (isinstance(node_type.config, type) and issubclass(node_type.config, NodeConfig)):
        return f"node type {node_type.name!r}: its config is not a NodeConfig model"
    if not callable(getattr(item.executor, "execute", None)):
        return f"node type {node_type.name!r}: its executor has no execute method"
    if item.check is not None and not callable(item.check):
        return f"node type {node_type.name!r}: its check is not callable"
    return None


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _excerpt(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
