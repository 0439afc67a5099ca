"""What an executor sees of the run: its node, config, scope, events, nested graphs."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from types import UnionType
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin

from pydantic import TypeAdapter, ValidationError

from app.domain.events import EventType
from app.domain.node_types import NodeConfig, TemplateStr
from app.domain.run import NodeRecord
from app.engine.compile.plan import Plan, PlanNode
from app.engine.run import bounded
from app.engine.run.scope import Scope
from app.errors import NodeConfigError

if TYPE_CHECKING:
    from app.engine.run.runtime import GraphResult, RunRuntime


class NodeContext:
    """One attempt of one node. Built by the scheduler; executors only read it and call it."""

    __slots__ = ("attempt", "depth", "key", "node", "previous", "resume_value", "runtime", "scope")

    def __init__(
        self,
        runtime: RunRuntime,
        node: PlanNode,
        key: str,
        scope: Scope,
        attempt: int,
        depth: int,
        previous: NodeRecord | None = None,
        resume_value: Any = None,
    ) -> None:
        self.runtime = runtime
        self.node = node
        self.key = key
        self.scope = scope
        self.attempt = attempt
        self.depth = depth
        self.previous = previous
        self.resume_value = resume_value

    @property
    def execution_id(self) -> str:
        return self.runtime.execution_id

    @property
    def config(self) -> NodeConfig:
        return self.node.config

    @property
    def idempotency_key(self) -> str:
        """Stable across attempts and recoveries: execution id + qualified node key."""
        return f"{self.runtime.execution_id}:{self.key}"

    async def evaluate(self, field: str, names: Mapping[str, Any] | None = None) -> Any:
        """Evaluate the compiled expression of config field ``field`` over the scope.

        Bounded, and off the event loop once it is not cheap (see ``app.engine.run.bounded``).
        """
        expression = self.node.expressions[field]
        scope = self.scope if names is None else names
        return await bounded.run(expression.evaluate, scope, self.runtime.limits)

    async def render(self, field: str, names: Mapping[str, Any] | None = None) -> Any:
        """The config field with templates rendered and scalar templates type-checked.

        A field the document did not set gives the config default. Rendering is bounded, and
        off the event loop once it is not cheap (see ``app.engine.run.bounded``).
        """
        compiled = self.node.templated.get(field)
        if compiled is None:  # not set, or set without a template
            return _field_value(self.node.config, field)
        scope = self.scope if names is None else names
        value = await bounded.run(compiled.render, scope, self.runtime.limits)
        return _check_rendered(type(self.node.config), field, value)

    def graph(self, field: str) -> Plan:
        """The nested plan of container field ``field`` (``body``, ``try``, ...)."""
        return self.node.graphs[field]

    async def emit(self, type_: EventType, data: dict[str, Any]) -> None:
        """Emit a progress-style event for this node now (``node.token``, ``node.progress``)."""
        self.log_event(type_, data)
        await self.runtime.log.flush()

    def log_event(self, type_: EventType, data: dict[str, Any]) -> None:
        """Log an event for this node that is stored together with the node's own outcome (its
        completion, failure or suspension): both or neither survive a crash
        (``form.requested`` beside ``node.waiting``)."""
        self.runtime.log.event(type_, node_id=self.key, level=self.node.level, data=data)

    async def run_graph(self, plan: Plan, scope: Scope, key: str) -> GraphResult:
        """Run a nested graph to its end under this node (loop bodies, try blocks, sub-workflows).

        Node keys inside are prefixed with ``key`` so resume skips what already completed;
        cancellation and pause reach it like any other graph of the run.
        """
        return await self.runtime.run_graph(plan, scope, key, depth=self.depth + 1)


def _field_value(config: NodeConfig, field: str) -> Any:
    name = _attribute_name(type(config), field)
    return getattr(config, name)


@lru_cache(maxsize=512)
def _attribute_name(model: type[NodeConfig], field: str) -> str:
    if field in model.model_fields:
        return field
    for name, info in model.model_fields.items():
        if info.alias == field:
            return name
    raise KeyError(field)


def _check_rendered(model: type[NodeConfig], field: str, value: Any) -> Any:
    try:
        return _runtime_adapter(model, field).validate_python(value)
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"]
        raise NodeConfigError(
            f"config field {field!r} rendered to {value!r}, which is not valid: {problem}"
        ) from None


@lru_cache(maxsize=512)
def _runtime_adapter(model: type[NodeConfig], field: str) -> TypeAdapter[Any]:
    """The field's type without the template alternative: what a rendered value must be."""
    annotation: Any = model.model_fields[_attribute_name(model, field)].annotation
    if get_origin(annotation) in (Union, UnionType):
        members = [a for a in get_args(annotation) if a != TemplateStr]
        annotation = members[0] if len(members) == 1 else Union[tuple(members)]  # noqa: UP007
    return TypeAdapter(annotation)
