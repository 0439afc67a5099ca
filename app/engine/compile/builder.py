"""One pass over a workflow document that validates it and, when it is valid, builds its plan.

The builder never stops at the first problem: it records an :class:`ErrorDetail` (JSON pointer,
message, stable code) for each and goes on with whatever still makes sense, so one answer lists
everything to fix. Graphs are walked recursively (container bodies, try blocks, inline
sub-workflows) with their own id scope, their pointer prefix and their nesting depth.

It is also the hot path of planning (a 10,000-node document), so the common case is kept lean:
configs are validated one batch per node type, a node of a type without expression or graph
fields whose config holds no ``{{`` is not looked at one by one, equal expressions and template
strings are compiled once per document, and error pointers are only built for errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from pydantic import ValidationError

from app.domain.node_types import NodeConfig, NodeType, NodeTypes
from app.domain.workflow import GraphSpec, WorkflowDocument
from app.engine.compile import (
    budget,
    config_fields,
    expressions,
    references,
    templates,
)
from app.engine.compile import inputs as inputs_schema
from app.engine.compile import shape as graph_shape
from app.engine.compile import wiring as graph_wiring
from app.engine.compile.expressions import Expression
from app.engine.compile.plan import EMPTY, NO_PARTS, CompiledParts, Plan
from app.engine.compile.shape import GraphParts
from app.engine.compile.templates import CompiledValue
from app.engine.compile.validation_errors import errors_from_validation, escape, join, within
from app.errors import ErrorDetail, ExpressionError


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one document may ask of the planner and of every run of it.

    ``max_node_output_bytes`` bounds every node's output (as compact JSON) and what one
    evaluation of an expression may build; ``max_expression_cpu_s`` the CPU time of one
    evaluation (see ``app.engine.run.bounded``).
    """

    max_nodes: int = 10_000  # all nodes incl. nested graphs
    max_depth: int = 8  # container nesting depth
    max_expression_length: int = expressions.DEFAULT_MAX_EXPRESSION_LENGTH  # characters
    max_edges: int = 50_000  # all edges incl. nested graphs
    max_node_output_bytes: int = budget.DEFAULT_MAX_BYTES  # bytes
    max_expression_cpu_s: float = budget.DEFAULT_CPU_S  # seconds of CPU per evaluation


DEFAULT_LIMITS = Limits()


class GraphBuilder:
    """Validates and plans one document; every problem found ends up in ``errors``."""

    def __init__(self, node_types: NodeTypes, limits: Limits) -> None:
        self.node_types = node_types
        self.limits = limits
        self.errors: list[ErrorDetail] = []
        self._types: dict[str, NodeType | None] = {}
        self._expressions: dict[str, Expression] = {}
        self._texts: dict[str, CompiledValue] = {}
        self._nodes_seen = 0
        self._edges_seen = 0
        self._over_limit = False

    def error(self, pointer: str, message: str, code: str) -> None:
        self.errors.append(ErrorDetail(pointer, message, code))

    def document(self, document: Mapping[str, Any] | WorkflowDocument) -> Plan | None:
        """The plan of a whole document, or None when ``errors`` says what is wrong."""
        name: Any
        inputs: Any
        if isinstance(document, WorkflowDocument):
            parts = self.graph_from_model(document, "")
            name, inputs = document.name, document.inputs
        elif isinstance(document, Mapping):
            parts = self.parse_graph(document, WorkflowDocument, "")
            name, inputs = document.get("name"), document.get("inputs")
        else:
            self.error("", "expected a JSON object (the workflow document)", "invalid_value")
            return None
        if isinstance(inputs, Mapping):
            self.errors += inputs_schema.problems(inputs)
            inputs = graph_shape.copied(dict(inputs))
        plan = None
        if parts is not None:
            graph_shape.detach(parts)
            plan = self.graph(parts, 0, references.TOP)
        if self.errors and isinstance(document, Mapping):
            self.errors = [within(document, error) for error in self.errors]
        if plan is None or self.errors:
            return None
        plan.name = name
        plan.input_schema = inputs
        return plan

    def graph_from_model(self, graph: GraphSpec, pointer: str) -> GraphParts | None:
        """The parts of an already validated graph (None past the size limits)."""
        if not self._within_limits(pointer, len(graph.nodes), len(graph.edges)):
            return None
        return graph_shape.from_model(graph, pointer)

    def parse_graph(self, raw: Any, model: type[GraphSpec], pointer: str) -> GraphParts | None:
        """The parts of a raw graph that have the right shape (the others are reported)."""
        if not isinstance(raw, Mapping):
            self.error(pointer, "expected an object with 'nodes' and 'edges'", "invalid_value")
            return None
        nodes, edges = graph_shape.size(raw.get("nodes")), graph_shape.size(raw.get("edges"))
        if not self._within_limits(pointer, nodes, edges):
            return None
        return graph_shape.parse(raw, model, pointer, self.errors)

    def graph(
        self, parts: GraphParts, depth: int, context: references.Context | None
    ) -> Plan | None:
        """Every check of one graph and its nested graphs; its plan when nothing was wrong.

        ``context`` holds the names visible around the graph; None skips the checks of the
        names templates refer to (a graph planned on its own, outside its document).
        """
        index = self._index(parts)
        names = None if context is None else context.names(index)
        checked = self._nodes(parts, depth, names)
        wiring = graph_wiring.wire(parts, index, checked, self.error)
        outputs = None
        if parts.outputs is not None:
            outputs = self._compile(parts.outputs, parts.pointer, "outputs")
            if outputs is not None and names is not None:
                where = join(parts.pointer, "outputs")
                self._references(outputs.names, names, frozenset(), parts.outputs, where)
        size = len(parts.ids)
        order = graph_wiring.topological_order(wiring, size)
        if len(order) < size and wiring.complete:
            graph_wiring.report_cycles(parts, wiring, order, self.error)
        if self.errors:
            return None
        return graph_wiring.assemble(parts, checked, wiring, order, outputs)

    def depth_ok(self, pointer: str, depth: int) -> bool:
        """Whether a graph at ``depth`` is allowed (reported at ``pointer`` when not)."""
        if depth <= self.limits.max_depth:
            return True
        message = f"graphs nested too deeply (limit {self.limits.max_depth} levels of containers)"
        self.error(pointer, message, "limit_exceeded")
        return False

    def _within_limits(self, pointer: str, nodes: int, edges: int) -> bool:
        self._nodes_seen += nodes
        self._edges_seen += edges
        limits = self.limits
        if self._nodes_seen <= limits.max_nodes and self._edges_seen <= limits.max_edges:
            return True
        if not self._over_limit:
            self._over_limit = True
            many, what, limit = (
                (self._nodes_seen, "nodes", limits.max_nodes)
                if self._nodes_seen > limits.max_nodes
                else (self._edges_seen, "edges", limits.max_edges)
            )
            message = f"too many {what}: at least {many}, limit {limit} (nested graphs count)"
            self.error(join(pointer, what), message, "limit_exceeded")
        return False

    def _index(self, parts: GraphParts) -> dict[str, int]:
        """Node id -> position; reports duplicate ids and extra ``start`` nodes."""
        ids = parts.ids
        index = dict(zip(cast(list[str], ids), range(len(ids)), strict=True))
        if len(index) < len(ids) or None in ids:  # some id repeats or could not be read
            index = {}
            for i, node_id in enumerate(ids):
                if node_id is None:
                    continue
                first = index.setdefault(node_id, i)
                if first != i:
                    where = join(parts.pointer, "nodes", first)
                    message = f"duplicate node id {node_id!r} (first used at {where})"
                    self.error(join(parts.pointer, "nodes", i, "id"), message, "duplicate_id")
        if parts.types.count("start") > 1:
            starts = [i for i, node_type in enumerate(parts.types) if node_type == "start"]
            for i in starts[1:]:
                message = f"a graph has at most one start node (the first is {ids[starts[0]]!r})"
                self.error(join(parts.pointer, "nodes", i, "type"), message, "multiple_starts")
        return index

    def _lookup(self, name: str) -> NodeType | None:
        if name not in self._types:
            self._types[name] = self.node_types.get(name)
        return self._types[name]

    def _batch_configs(self, parts: GraphParts) -> tuple[list[NodeConfig | None], list[int]]:
        """Configs validated one batch per type, and the positions left to check one by one.

        A node is done here when its batch validated and it has nothing to compile (its type
        has no expression or graph field and its config holds no template). Every other node
        is left, in document order, so that problems are reported in document order.
        """
        size = len(parts.ids)
        configs: list[NodeConfig | None] = [None] * size
        if not parts.intact:
            return configs, list(range(size))
        left: list[int] = []
        raw = cast(list[dict[str, Any]], parts.configs)
        for name, members in _groups(cast(list[str], parts.types)).items():
            node_type = self._lookup(name) if len(members) > 1 else None
            batch = list(map(raw.__getitem__, members))
            validated = None if node_type is None else _validated(node_type.config, batch)
            if node_type is None or validated is None:
                left += members
                continue
            for i, config in zip(members, validated, strict=True):
                configs[i] = config
            if config_fields.plain(node_type.config):
                left += [members[k] for k in config_fields.templated(batch)]
            else:
                left += members
        left.sort()
        return configs, left

    def _nodes(
        self, parts: GraphParts, depth: int, names: references.Names | None
    ) -> graph_wiring.Checked:
        """Each node's config and compiled parts; None configs where type or config is wrong."""
        configs, left = self._batch_configs(parts)
        size = len(configs)
        checked = graph_wiring.Checked(configs, [NO_PARTS] * size)
        base = parts.pointer
        for i in left:
            raw = parts.configs[i]
            if raw is None:  # the node has the wrong shape: already reported
                continue
            pointer = f"{base}/nodes/{i}"
            config = configs[i]
            if config is None:
                config = configs[i] = self._config(raw, cast(str, parts.types[i]), pointer, depth)
            if config is not None and raw:
                checked.parts[i] = self._fields(config, raw, pointer, depth, names)
        return checked

    def _config(
        self, raw: dict[str, Any], type_name: str, pointer: str, depth: int
    ) -> NodeConfig | None:
        node_type = self._lookup(type_name)
        if node_type is None:
            known = ", ".join(sorted(self.node_types))
            message = f"unknown node type {type_name!r} (known types: {known})"
            self.error(f"{pointer}/type", message, "unknown_type")
            return None
        try:
            return node_type.config.model_validate(raw)
        except ValidationError as exc:
            self._config_errors(exc, node_type.config, raw, pointer, depth)
            return None

    def _fields(
        self,
        config: NodeConfig,
        raw: dict[str, Any],
        pointer: str,
        depth: int,
        names: references.Names | None,
    ) -> CompiledParts:
        """Compile the node's expressions and templates, check the names they refer to, and
        plan its nested graphs.

        Only templates that are not constant are kept: the others are read from the config.
        """
        table = config_fields.field_table(type(config))
        constant = not config_fields.may_hold_template(raw)  # skip the compiler
        templated: dict[str, CompiledValue] = {}
        expressions: dict[str, Expression] = {}
        graphs: dict[str, Plan] = {}
        used: frozenset[str] = frozenset()
        compiled_expressions = type(config).expression_fields(raw)
        for key, value in raw.items():
            entry = table.get(key) or config_fields.extra_field(key)  # a model may allow extras
            kind = config_fields.kind_in(entry, compiled_expressions)
            if kind == "template":
                part = type(config).template_part(entry.name, value)
                compiled = None if constant else self._compile(part, pointer, "config", key)
                if compiled is not None and not compiled.is_constant:
                    templated[entry.name] = compiled
                    used = compiled.names
            elif kind == "expression":
                expression = self._expression(value, pointer, key)
                if expression is not None:
                    expressions[entry.name] = expression
                    used = expression.names
            elif kind == "graph" and (nested := getattr(config, entry.attr)) is not None:
                context = references.nested(config, entry.name, names)
                plan = self._nested(nested, join(pointer, "config", key), depth + 1, context)
                if plan is not None:
                    graphs[entry.name] = plan
            if used and names is not None:
                where = join(pointer, "config", key)
                self._references(used, names, config.bindings(entry.name), value, where)
                used = frozenset()
        if not (templated or expressions or graphs):
            return NO_PARTS
        return CompiledParts(templated or EMPTY, expressions or EMPTY, graphs or EMPTY)

    def _config_errors(
        self,
        exc: ValidationError,
        model: type[NodeConfig],
        raw: dict[str, Any],
        pointer: str,
        depth: int,
    ) -> None:
        """Report a config that failed its schema, and still check every field that did not."""
        table = config_fields.field_table(model)
        base = f"{pointer}/config"
        names = {entry.name for entry in table.values()}
        details = errors_from_validation(
            exc, base=base, data=raw, code="invalid_config", known_fields=names
        )
        graphs = {k for k, v in raw.items() if k in table and table[k].kind == "graph"}
        graphs = {k for k in graphs if isinstance(raw[k], Mapping)}
        inside = tuple(f"{base}/{escape(key)}/" for key in graphs)
        details = [d for d in details if not d.pointer.startswith(inside)]  # re-found below
        self.errors += details
        failed = tuple(d.pointer for d in details)
        compiled_expressions = model.expression_fields(raw)
        for key, value in raw.items():
            entry = table.get(key)
            where = f"{base}/{escape(key)}"
            if entry is None or where in failed or where.startswith(tuple(p + "/" for p in failed)):
                continue
            if key in graphs and self.depth_ok(where, depth + 1):
                parts = self.parse_graph(value, entry.graph_model, where)
                if parts is not None:
                    self.graph(parts, depth + 1, None)  # bindings need a valid config
            elif entry.kind == "template":
                self._compile(value, base, key)
            elif config_fields.kind_in(entry, compiled_expressions) == "expression" and isinstance(
                value, str
            ):
                self._expression(value, pointer, key)

    def _nested(
        self, nested: GraphSpec, pointer: str, depth: int, context: references.Context | None
    ) -> Plan | None:
        if not self.depth_ok(pointer, depth):
            return None
        parts = self.graph_from_model(nested, pointer)
        return self.graph(parts, depth, context) if parts is not None else None

    def _references(
        self,
        used: frozenset[str],
        names: references.Names,
        bound: frozenset[str],
        value: Any,
        pointer: str,
    ) -> None:
        self.errors += references.check(used, names, bound, value, pointer)

    def _expression(self, source: str, pointer: str, key: str) -> Expression | None:
        """The compiled condition (shared by equal sources), or None once reported."""
        compiled = self._expressions.get(source)
        if compiled is not None:
            return compiled
        limit = self.limits.max_expression_length
        where = join(pointer, "config", key)
        if len(source) > limit:
            message = f"expression is too long ({len(source)} characters, limit {limit})"
            self.error(where, message, "limit_exceeded")
            return None
        try:
            compiled = expressions.compile_expression(source, max_length=limit)
        except ExpressionError as exc:
            self.error(where, exc.message, "invalid_expression")
            return None
        self._expressions[source] = compiled
        return compiled

    def _compile(self, value: Any, pointer: str, *tokens: str) -> CompiledValue | None:
        """The compiled templates of ``value``, or None once every bad string is reported."""
        if isinstance(value, str) and value in self._texts:
            return self._texts[value]
        limit = self.limits.max_expression_length
        try:
            compiled = templates.compile_value(value, max_length=limit)
        except RecursionError:
            message = "value nested too deeply"
            self.error(join(pointer, *tokens), message, "limit_exceeded")
            return None
        except ExpressionError:
            for where, text in config_fields.strings(value, join(pointer, *tokens)):
                try:
                    templates.compile_template(text, max_length=limit)
                except ExpressionError as exc:
                    self.error(where, exc.message, config_fields.template_code(text))
            return None
        if isinstance(value, str):
            self._texts[value] = compiled
        return compiled


def _groups(types: list[str]) -> dict[str, list[int]]:
    """Node positions by type, each list in document order."""
    groups: dict[str, list[int]] = {}
    for i, type_name in enumerate(types):
        groups.setdefault(type_name, []).append(i)
    return groups


def _validated(model: type[NodeConfig], raw: list[dict[str, Any]]) -> list[NodeConfig] | None:
    """The configs of a batch of nodes of one type, or None when any of them fails."""
    try:
        return config_fields.list_adapter(model).validate_python(raw)
    except ValidationError:
        return None
