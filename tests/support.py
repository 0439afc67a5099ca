"""Helpers shared by the tests: run a document on the in-memory store, fake clock, executors."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from app.domain.events import Event, EventType
from app.domain.node_types import NodeConfig, NodeType
from app.domain.run import RunConfig, RunOutcome
from app.engine.compile.graph import Limits
from app.engine.ports import RunObserver
from app.engine.run.context import NodeContext, NodeExecutor
from app.engine.run.control import RunControl
from app.engine.run.observe import UNWATCHED
from app.engine.run.outcomes import NodeOutput, Suspend
from app.engine.run.scheduler import RunRequest, Scheduler
from app.nodes.registry import Registry, core_registry
from app.nodes.resources import NodeResources
from app.store.memory import MemoryStore

T = TypeVar("T")


class FakeClock:
    """Sleeps return at once and advance the clock; every sleep is recorded."""

    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=self.t)

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)


class ProbeConfig(NodeConfig):
    """Config of the ``probe`` test node type."""

    value: Any = None
    fail_times: int = 0
    sleep_s: float = 0.0
    suspend: bool = False


class ProbeExecutor:
    """A test node: counts calls, can sleep (really), fail N times, or suspend."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.running = 0
        self.max_running = 0
        self.cancelled: list[str] = []
        self.gate: asyncio.Event | None = None
        self._changed = asyncio.Event()

    async def wait_running(self, count: int) -> None:
        """Return once at least ``count`` probe nodes are inside ``execute`` at the same time."""
        while self.running < count:
            self._changed.clear()
            await self._changed.wait()

    async def execute(self, ctx: NodeContext) -> NodeOutput | Suspend:
        config: Any = ctx.config
        self.calls[ctx.key] = self.calls.get(ctx.key, 0) + 1
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        self._changed.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
            if config.sleep_s:
                await asyncio.sleep(config.sleep_s)
        except asyncio.CancelledError:
            self.cancelled.append(ctx.key)
            raise
        finally:
            self.running -= 1
        if self.calls[ctx.key] <= config.fail_times:
            from app.errors import NodeError

            raise NodeError(f"probe failure {self.calls[ctx.key]}")
        if config.suspend and ctx.resume_value is None:
            return Suspend("needs input", {"prompt": "answer me"})
        if ctx.resume_value is not None:
            return NodeOutput(ctx.resume_value)
        return NodeOutput(await ctx.render("value"))


def probe_registry(probe: ProbeExecutor | None = None) -> tuple[Registry, ProbeExecutor]:
    probe = probe or ProbeExecutor()
    return core_registry(NodeResources()).with_type(NodeType("probe", ProbeConfig), probe), probe


@dataclass
class Harness:
    """A scheduler on a memory store, with a fake clock by default."""

    registry: Registry = field(default_factory=lambda: probe_registry()[0])
    store: MemoryStore = field(default_factory=MemoryStore)
    clock: Any = field(default_factory=FakeClock)
    seed: int | None = 7
    limits: Limits | None = None
    observer: RunObserver = UNWATCHED

    @property
    def probe(self) -> ProbeExecutor:
        executor: Any = self.registry.executors["probe"]
        return executor  # type: ignore[no-any-return]

    def scheduler(self, executors: Mapping[str, NodeExecutor] | None = None) -> Scheduler:
        return Scheduler(
            executors=executors or self.registry.executors,
            events=self.store,
            checkpoints=self.store,
            loader=self.store,
            clock=self.clock,
            node_types=self.registry.node_types,
            seed=self.seed,
            limits=self.limits,
            observer=self.observer,
        )

    async def run(
        self,
        document: Mapping[str, Any],
        inputs: Any = None,
        *,
        config: Mapping[str, Any] | None = None,
        execution_id: str = "run-1",
        control: RunControl | None = None,
        resume: bool = False,
        resume_values: Mapping[str, Any] | None = None,
    ) -> RunOutcome:
        scheduler = self.scheduler()
        request = RunRequest(
            execution_id=execution_id,
            plan=scheduler.plan(document),
            inputs=inputs if inputs is not None else {},
            config=RunConfig.model_validate(config or {}),
            resume=resume,
            last_seq=self.store.last_seq(execution_id),
            resume_values=resume_values or {},
        )
        return await scheduler.run(request, control)

    async def wait_for_event(self, type_: EventType, node_id: str | None = None) -> Event:
        """Return the first stored event of ``type_`` (for ``node_id``), waiting for it."""
        arrived = asyncio.Event()

        def match() -> Event | None:
            for event in self.store.events.get("run-1", ()):
                if event.type is type_ and (node_id is None or event.node_id == node_id):
                    return event
            return None

        unsubscribe = self.store.subscribe(lambda _batch: arrived.set())
        try:
            while (found := match()) is None:
                arrived.clear()
                await arrived.wait()
            return found
        finally:
            unsubscribe()

    def events(self, execution_id: str = "run-1") -> list[Event]:
        return list(self.store.events[execution_id])

    def types(self, execution_id: str = "run-1") -> list[str]:
        return [e.type.value for e in self.events(execution_id)]

    def of_type(self, type_: EventType, execution_id: str = "run-1") -> list[Event]:
        return [e for e in self.events(execution_id) if e.type is type_]


def node(node_id: str, type_: str = "transform", **config: Any) -> dict[str, Any]:
    """A node dict; ``transform`` nodes default to a constant value of their id."""
    if type_ == "transform" and "value" not in config:
        config["value"] = node_id
    extra = {
        k: config.pop(k)
        for k in ("retry", "timeout_s", "critical", "continue_on_error")
        if k in config
    }
    return {"id": node_id, "type": type_, "config": config, **extra}


def edge(source: str, target: str, branch: str | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"from": source, "to": target}
    if branch is not None:
        e["branch"] = branch
    return e


def workflow(
    nodes: list[dict[str, Any]], edges: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    return {"name": "test", "nodes": nodes, "edges": edges, **extra}


def big_document(size: int = 10_000) -> dict[str, Any]:
    """A chain of ``size`` transform nodes (10,000: tens of milliseconds of planning)."""
    nodes = [node(f"n{i}", value={"i": i}) for i in range(size)]
    edges = [edge(a["id"], b["id"]) for a, b in itertools.pairwise(nodes)]
    return workflow(nodes, edges)


async def ticks_while(work: Awaitable[T]) -> tuple[T, int]:
    """``work``'s result, and how often another task ran on the event loop meanwhile."""
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        result = await work
    finally:
        ticker.cancel()
    return result, ticks
