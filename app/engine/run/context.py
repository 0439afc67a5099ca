"""The executor surface: what a node executor is given (:class:`NodeContext`) and must be
(:class:`NodeExecutor`). Executors, built-in or plug-in, use this and nothing else of the run.

=====================  ===========================================================================
``ctx.config``         the node's validated config (a pydantic model of its type)
``ctx.render(field)``  the config field with templates rendered over the scope (bounded)
``ctx.evaluate(f)``    the compiled expression of config field ``f`` (bounded)
``ctx.render_part``    a piece of a field rendered over names of its own (an agent tool's request)
``ctx.emit(t, data)``  a node event, durable before ``emit`` returns (rare events)
``ctx.stream()``       a :class:`TokenStream`: ``write(text)`` becomes coalesced ``node.token``
``ctx.step(n, fn)``    a durable sub-step: runs ``fn`` once, journals its result under ``n``
``ctx.has_step(n)``    whether step ``n`` finished before
``ctx.spend(...)``     count ``api_calls`` / ``tokens`` against the run's limits
``ctx.execution_id``   the run; ``ctx.node_id``/``ctx.key`` the node; ``ctx.attempt`` its attempt
``ctx.idempotency_key``  stable across attempts, resumes and takeovers
``ctx.stopping``       the run is pausing or cancelling (cancellation itself arrives as
                       ``asyncio.CancelledError``)
``ctx.clock``          the run's clock (``now``, ``monotonic``, ``sleep``)
``ctx.run_graph``      containers: run a nested graph (``ctx.graph(field)``, ``ctx.workflow_plan``)
=====================  ===========================================================================
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from functools import lru_cache
from types import UnionType
from typing import Any, Protocol, Union, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError

from app.domain.events import EventType
from app.domain.node_types import NodeConfig, TemplateStr
from app.domain.run import NodeRecord
from app.domain.status import NodeStatus
from app.engine.compile.builder import Limits
from app.engine.compile.plan import Plan, PlanNode
from app.engine.ports import Clock, WorkflowLoader
from app.engine.run import bounded
from app.engine.run.control import RunControl
from app.engine.run.outcomes import GraphResult, NodeOutput, Suspend, as_node_error, error_payload
from app.engine.run.run_log import RunLog
from app.engine.run.scope import Scope
from app.engine.run.streams import TokenStream
from app.engine.run.usage import RunUsage
from app.errors import NodeConfigError, NodeError, OxifyError

Nest = Callable[[Plan, Scope, str], Awaitable[GraphResult]]


class NodeExecutor(Protocol):
    """Runs one node type.

    An executor returns a :class:`NodeOutput` or a :class:`Suspend` (the run must wait for
    something outside, e.g. a person), or raises (``NodeError`` for an expected failure). It
    must stop promptly when cancelled. Executors whose class sets ``inline = True`` promise
    never to suspend on I/O; the scheduler then runs them without a task of their own.
    """

    async def execute(self, ctx: NodeContext) -> NodeOutput | Suspend:
        """Run the node once (the scheduler owns retries and timeouts)."""
        ...


class RunHandle:
    """What every node context of one run shares: ids, log, control, clock, limits, counters,
    finished sub-steps, and the way to plan stored workflows. Built once per run."""

    def __init__(
        self,
        *,
        execution_id: str,
        log: RunLog,
        control: RunControl,
        clock: Clock,
        limits: Limits,
        usage: RunUsage,
        steps: dict[str, dict[str, Any]],
        loader: WorkflowLoader | None,
        planner: Callable[[Mapping[str, Any]], Awaitable[Plan]],
    ) -> None:
        self.execution_id = execution_id
        self.log = log
        self.control = control
        self.clock = clock
        self.limits = limits  # node outputs and expression evaluations are bounded by these
        self.usage = usage
        self.steps = steps  # node key → {step name: result} of the steps that finished
        self.loader = loader
        self.plan_document = planner


class NodeContext:
    """One attempt of one node. Built by the graph loop; executors only read it and call it."""

    __slots__ = (
        "_nest",
        "_run",
        "_stream",
        "attempt",
        "depth",
        "key",
        "node",
        "previous",
        "resume_value",
        "scope",
    )

    def __init__(
        self,
        run: RunHandle,
        node: PlanNode,
        key: str,
        scope: Scope,
        attempt: int,
        depth: int,
        nest: Nest,
        previous: NodeRecord | None = None,
        resume_value: Any = None,
    ) -> None:
        self._run = run
        self._nest = nest
        self._stream: TokenStream | None = None
        self.node = node
        self.key = key  # the node id qualified by its containers (``loop[2].double``)
        self.scope = scope
        self.attempt = attempt
        self.depth = depth
        self.previous = previous  # the node's record from before this stretch of the run
        self.resume_value = resume_value  # what a person answered, when the node waited

    # -- who and what ---------------------------------------------------------------------

    @property
    def execution_id(self) -> str:
        return self._run.execution_id

    @property
    def node_id(self) -> str:
        return self.node.id

    @property
    def config(self) -> NodeConfig:
        return self.node.config

    @property
    def idempotency_key(self) -> str:
        """Stable across attempts and recoveries: execution id + qualified node key."""
        return f"{self._run.execution_id}:{self.key}"

    @property
    def clock(self) -> Clock:
        return self._run.clock

    @property
    def stopping(self) -> bool:
        """The run is pausing or cancelling: a long loop should stop at its next boundary."""
        return self._run.control.stopping

    # -- config ---------------------------------------------------------------------------

    async def evaluate(self, field: str, names: Mapping[str, Any] | None = None) -> Any:
        """Evaluate the compiled expression of config field ``field`` over the scope.

        Bounded, and off the event loop once it is not cheap (see ``app.engine.run.bounded``).
        """
        expression = self.node.expressions[field]
        scope = self.scope if names is None else names
        return await bounded.run(expression.evaluate, scope, self._run.limits)

    async def render(self, field: str, names: Mapping[str, Any] | None = None) -> Any:
        """The config field with templates rendered and scalar templates type-checked.

        A field the document did not set gives the config default. Rendering is bounded, and
        off the event loop once it is not cheap (see ``app.engine.run.bounded``).
        """
        compiled = self.node.templated.get(field)
        if compiled is None:  # not set, or set without a template
            return _field_value(self.node.config, field)
        scope = self.scope if names is None else names
        value = await bounded.run(compiled.render, scope, self._run.limits)
        return _check_rendered(type(self.node.config), field, value)

    async def render_part(
        self, field: str, path: tuple[str | int, ...], names: Mapping[str, Any]
    ) -> Any:
        """The piece at ``path`` of template field ``field`` rendered over ``names`` (bounded
        like :meth:`render`): for a field whose parts are rendered apart, each with names of
        its own (see ``NodeConfig.template_part``). A field without templates gives the
        document's value at ``path``, None where there is nothing."""
        compiled = self.node.templated.get(field)
        try:
            if compiled is None:
                value: Any = _field_value(self.node.config, field)
                for step in path:
                    value = value[step] if isinstance(step, int) else getattr(value, step)
                return value.model_dump(by_alias=True) if isinstance(value, BaseModel) else value
            part = compiled.part(path)
        except (KeyError, IndexError, AttributeError, TypeError):
            return None
        return await bounded.run(part.render, names, self._run.limits)

    # -- events ---------------------------------------------------------------------------

    async def emit(self, type_: EventType, data: dict[str, Any]) -> None:
        """Log an event for this node and wait until it is durable: one journal write per
        call, so keep it for rare events; stream frequent ones through :meth:`stream`."""
        self.log_event(type_, data)
        await self._run.log.flush()

    def log_event(self, type_: EventType, data: dict[str, Any]) -> None:
        """Log an event for this node that is stored together with the node's own outcome (its
        completion, failure or suspension): both or neither survive a crash
        (``form.requested`` beside ``node.waiting``)."""
        self._run.log.event(type_, node_id=self.key, level=self.node.level, data=data)

    def stream(self) -> TokenStream:
        """This attempt's token stream: text written to it goes out as coalesced ``node.token``
        events, without waiting for durable writes; it is flushed when the attempt ends."""
        if self._stream is None:
            self._stream = TokenStream(self._run.log, self.key, self.node.level, self.attempt)
        return self._stream

    def end_attempt(self) -> None:
        """The attempt is over (the attempt runner calls this): streamed text still gathered
        is logged now, before the node's own event."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    # -- durable sub-steps and spending ---------------------------------------------------

    async def step(self, name: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``fn`` once for this node and journal its JSON result under ``name``.

        A step that finished before (in an earlier attempt, before a crash, a takeover, a
        pause or a retry of the run) returns its recorded result without running ``fn``
        again. The result is durable when ``step`` returns, with a ``node.step`` event
        (``{"node_id", "name", "ok"}``). A step whose ``fn`` raises logs ``ok: false`` and
        raises; it runs again when the node does. Names are the node's own: use one per
        distinct piece of work (``turn-3``, ``turn-3/call-ab12``).
        """
        run = self._run
        finished = run.steps.get(self.key)
        if finished is not None and name in finished:
            return finished[name]
        data: dict[str, Any] = {"node_id": self.key, "name": name}
        try:
            result = await fn()
            await bounded.check_value(result, f"step {name!r}'s result", run.limits)
        except (Exception, asyncio.CancelledError) as exc:
            if isinstance(exc, Exception):
                error = error_payload(as_node_error(exc), self.key)
                self.log_event(EventType.NODE_STEP, {**data, "ok": False, "error": error})
            raise
        run.steps.setdefault(self.key, {})[name] = result
        self.log_event(EventType.NODE_STEP, {**data, "ok": True})
        run.log.record(  # the new step only: resume folds a node's records' steps together
            NodeRecord(
                key=self.key,
                node_id=self.node.id,
                status=NodeStatus.RUNNING,
                attempt=self.attempt,
                steps={name: result},
                usage=run.usage.of(self.key),
            )
        )
        await run.log.checkpoint(force=True)
        return result

    def has_step(self, name: str) -> bool:
        """Whether step ``name`` of this node finished before (so :meth:`step` returns its
        recorded result without running anything)."""
        finished = self._run.steps.get(self.key)
        return finished is not None and name in finished

    def spend(self, *, api_calls: int = 0, tokens: int = 0, cost_usd: float | None = 0.0) -> None:
        """Count outbound calls (each attempt of one is a call) and LLM tokens (input +
        output) against the run's limits; raises ``RunLimitExceeded`` once one is crossed,
        which fails the run. Count a call before making it, tokens once they are known.
        ``cost_usd`` (what a priced call cost) is added to the run's total, not capped; None
        says a model call had no price (counted as ``unpriced_calls``)."""
        self._run.usage.spend(self.key, api_calls=api_calls, tokens=tokens, cost_usd=cost_usd)

    # -- nested graphs (containers) -------------------------------------------------------

    def graph(self, field: str) -> Plan:
        """The nested plan of container field ``field`` (``body``, ``try``, ...)."""
        return self.node.graphs[field]

    async def workflow_plan(self, workflow_id: str, version: int | None) -> Plan:
        """The plan of a stored workflow (the latest version when ``version`` is None)."""
        loader = self._run.loader
        if loader is None:
            raise NodeConfigError("sub-workflows by workflow_id need a workflow store")
        try:
            document = await loader.load_workflow(workflow_id, version)
            return await self._run.plan_document(document)
        except OxifyError as exc:
            raise NodeError(f"sub-workflow {workflow_id!r}: {exc}", retryable=False) from exc

    async def run_graph(self, plan: Plan, scope: Scope, key: str) -> GraphResult:
        """Run a nested graph to its end under this node (loop bodies, try blocks, sub-workflows).

        Node keys inside are prefixed with ``key`` so resume skips what already completed;
        cancellation and pause reach it like any other graph of the run. Returns when the
        graph completed or failed; raises ``GraphInterrupted`` when it paused or waits.
        """
        return await self._nest(plan, scope, key)


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
