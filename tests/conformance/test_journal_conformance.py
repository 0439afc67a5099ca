"""One suite for every implementation of the engine's journal ports (EventSink, CheckpointStore,
read_events): the in-memory store, and the SQL journal on Postgres and on SQLite.

The SQL journals need the execution rows their events reference, so each test asks the
backend for fresh executions (unique ids: tests sharing a module database never meet).
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain import views as models
from app.domain.events import Event, EventType
from app.domain.run import Checkpoint, NodeRecord, RunConfig
from app.domain.status import ExecutionStatus, Move, NodeStatus
from app.engine.run.scheduler import RunRequest, Scheduler
from app.errors import JournalRejected, LeaseLost
from app.nodes.registry import Registry, core_registry
from app.nodes.resources import NodeResources
from app.store import executions, forms, workflows
from app.store.db import create_engine, migrate
from app.store.journal import SqlJournal
from app.store.memory import MemoryStore
from tests.support import FakeClock, ProbeExecutor, edge, node, probe_registry, workflow

E = EventType
T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
KINDS = ["memory", "postgres", "sqlite"]
DOCUMENT = workflow(
    [
        node("start", "start"),
        node("double", value="{{ inputs.x * 2 }}"),
        node("check", "if", condition="double.output > 10"),
        node("big", value={"size": "big", "n": "{{ double.output }}"}),
        node("small", value="small"),
        node("vars", "set_var", name="seen", value="{{ double.output }}"),
        node("end", "end", outputs={"n": "{{ double.output }}", "seen": "{{ vars.seen }}"}),
    ],
    [
        edge("start", "double"),
        edge("double", "check"),
        edge("check", "big", "true"),
        edge("check", "small", "false"),
        edge("double", "vars"),
        edge("big", "end"),
        edge("small", "end"),
        edge("vars", "end"),
    ],
)


@dataclass
class Backend:
    """A journal under test, and what the SQL ones need around it."""

    kind: str
    journal: Any  # MemoryStore | SqlJournal: both implement the ports
    engine: AsyncEngine | None = None
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def sql(self) -> bool:
        return self.engine is not None

    async def new_execution(self, document: dict[str, Any] | None = None) -> str:
        """A fresh execution id (with its workflow and execution rows on SQL)."""
        execution_id = f"x-{uuid.uuid4()}"
        if self.engine is not None:
            workflow_id = f"w-{uuid.uuid4()}"
            async with self.engine.begin() as conn:
                await workflows.insert_workflow(
                    conn,
                    workflow_id=workflow_id,
                    name="conformance",
                    document=document or DOCUMENT,
                    content_hash="0" * 64,
                    now=T0,
                    project="default",
                )
                await executions.insert_execution(
                    conn,
                    execution_id=execution_id,
                    workflow_id=workflow_id,
                    workflow_version=1,
                    inputs={},
                    config={},
                    status=ExecutionStatus.RUNNING,
                    now=T0,
                )
        return execution_id

    async def retried(self, execution_id: str) -> None:
        """What a retry and the claim after it do to the row (a replica drives it again)."""
        if self.engine is None:
            return
        async with self.engine.begin() as conn:
            await executions.move(conn, execution_id, Move.RETRY)
            await executions.move(conn, execution_id, Move.CLAIM)

    async def last_seq(self, execution_id: str) -> int:
        if isinstance(self.journal, MemoryStore):
            return self.journal.last_seq(execution_id)
        row = await self.row(execution_id)
        return row.last_seq

    async def prior_attempts(self, execution_id: str) -> dict[str, int]:
        if self.engine is None:
            return {}  # the scheduler falls back to the checkpointed records' attempts
        async with self.engine.connect() as conn:
            return await executions.node_attempts(conn, execution_id)

    async def row(self, execution_id: str) -> models.Execution:
        assert self.engine is not None
        async with self.engine.connect() as conn:
            found = await executions.get_execution(conn, execution_id)
        assert found is not None
        return found


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    asyncio.run(migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(params=KINDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> str | None:
    """None for the in-memory store; else a migrated database of its own for the module/test."""
    if request.param == "memory":
        return None
    if request.param == "postgres":
        url: str = request.getfixturevalue("pg_database_url")
        return url
    shutil.copyfile(sqlite_template, tmp_path / "oxify.db")
    return f"sqlite+aiosqlite:///{tmp_path / 'oxify.db'}"


@pytest.fixture
async def backend(database_url: str | None) -> AsyncIterator[Backend]:
    if database_url is None:
        yield Backend("memory", MemoryStore())
        return
    engine = create_engine(database_url)
    journal = SqlJournal(engine)
    try:
        yield Backend(engine.dialect.name, journal, engine)
    finally:
        await journal.close()
        await engine.dispose()


def ev(
    execution_id: str,
    seq: int,
    type_: EventType = E.LEVEL_STARTED,
    *,
    node_id: str | None = None,
    level: int | None = None,
    data: dict[str, Any] | None = None,
) -> Event:
    return Event(
        execution_id,
        seq,
        type_,
        T0 + timedelta(milliseconds=seq),
        node_id,
        level,
        data if data is not None else {"n": seq},
    )


def record(key: str, **changes: Any) -> NodeRecord:
    base: dict[str, Any] = {
        "key": key,
        "node_id": key.rsplit(".", 1)[-1],
        "status": NodeStatus.COMPLETED,
        "output": {"text": "héllo ✓", "items": [1, 2.5, None, True, {"deep": ["x"]}]},
        "attempt": 1,
        "started_at": T0,
        "finished_at": T0 + timedelta(seconds=1),
    }
    return NodeRecord(**(base | changes))


# -- events ----------------------------------------------------------------------------------


async def test_emitted_events_read_back_in_seq_order_with_paging(backend: Backend) -> None:
    run = await backend.new_execution()
    other = await backend.new_execution()
    batches = [
        [ev(run, 1, E.WORKFLOW_STARTED)],
        [
            ev(run, 2, E.NODE_STARTED, node_id="a", level=0, data={"attempt": 1}),
            ev(run, 3, E.NODE_COMPLETED, node_id="a", level=0, data={"output": [1, "二"]}),
        ],
        [ev(run, seq) for seq in range(4, 11)],
    ]
    for batch in batches:
        await backend.journal.emit(batch)
    await backend.journal.emit([ev(other, 1), ev(other, 2)])

    everything = await backend.journal.read_events(run, 0, 100)
    assert everything == [e for batch in batches for e in batch]
    assert all(e.ts.tzinfo is not None for e in everything)
    assert [e.seq for e in await backend.journal.read_events(run, 3, 4)] == [4, 5, 6, 7]
    assert [e.seq for e in await backend.journal.read_events(run, 8, 100)] == [9, 10]
    assert await backend.journal.read_events(run, 10, 100) == []
    assert [e.seq for e in await backend.journal.read_events(other, 0, 1)] == [1]
    assert await backend.journal.read_events(f"x-{uuid.uuid4()}", 0, 10) == []


async def test_concurrent_emits_from_several_runs_all_land_in_order(backend: Backend) -> None:
    runs = [await backend.new_execution() for _ in range(6)]
    per_run = 25

    async def drive(execution_id: str, step: int) -> None:
        seq = 0
        while seq < per_run:
            size = min(step, per_run - seq)
            await backend.journal.emit([ev(execution_id, seq + i + 1) for i in range(size)])
            seq += size

    await asyncio.gather(*(drive(run, 1 + i % 3) for i, run in enumerate(runs)))
    for run in runs:
        logged = await backend.journal.read_events(run, 0, 1000)
        assert [e.seq for e in logged] == list(range(1, per_run + 1))
        assert {e.execution_id for e in logged} == {run}


# -- checkpoints -----------------------------------------------------------------------------


async def test_checkpoints_store_records_and_events_together(backend: Backend) -> None:
    run = await backend.new_execution()
    await backend.journal.emit([ev(run, 1, E.WORKFLOW_STARTED)])
    first = Checkpoint(
        run,
        number=1,
        seq=3,
        created_at=T0,
        records=[
            record("start", output={"x": 1}),
            record(
                "check",
                output=False,
                branch="false",
                attempt=3,
                error={"code": "node_failed", "message": "earlier attempt"},
                started_at=datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
            ),
        ],
    )
    second = Checkpoint(
        run,
        number=2,
        seq=5,
        created_at=T0 + timedelta(seconds=5),
        records=[
            record("loop[2].double", set_vars={"total": 7, "names": ["a"]}, data={"k": 1}),
            record("broken", status=NodeStatus.FAILED, output=None, finished_at=None),
            record("never", status=NodeStatus.SKIPPED, output=None, started_at=None),
        ],
    )
    await backend.journal.save_checkpoint(
        first, [ev(run, 2), ev(run, 3, E.CHECKPOINT_CREATED, data={"checkpoint": 1})]
    )
    await backend.journal.save_checkpoint(
        second, [ev(run, 4), ev(run, 5, E.CHECKPOINT_CREATED, data={"checkpoint": 2})]
    )

    loaded = await backend.journal.load_checkpoints(run)
    assert loaded == [first, second]
    assert loaded[0].records[1].started_at == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert all(r.status in NodeStatus for c in loaded for r in c.records)
    assert [e.seq for e in await backend.journal.read_events(run, 0, 100)] == [1, 2, 3, 4, 5]
    assert await backend.journal.load_checkpoints(f"x-{uuid.uuid4()}") == []


async def test_a_checkpoint_that_cannot_be_stored_leaves_no_event_behind(
    backend: Backend,
) -> None:
    if not backend.sql:
        pytest.skip("the in-memory store cannot fail to store")
    run = await backend.new_execution()
    checkpoint = Checkpoint(run, number=1, seq=2, created_at=T0, records=[record("a")])
    await backend.journal.save_checkpoint(checkpoint, [ev(run, 1), ev(run, 2)])
    again = Checkpoint(run, number=1, seq=4, created_at=T0, records=[record("b")])  # same number

    with pytest.raises(JournalRejected, match=r"(?i)unique|duplicate"):
        await backend.journal.save_checkpoint(again, [ev(run, 3), ev(run, 4)])

    assert await backend.journal.load_checkpoints(run) == [checkpoint]
    assert [e.seq for e in await backend.journal.read_events(run, 0, 100)] == [1, 2]
    assert (await backend.row(run)).last_seq == 2


async def test_strings_with_nul_characters_are_stored(backend: Backend) -> None:
    # JSON allows "\u0000" (an HTTP body, a file read by a node) but Postgres jsonb rejects it:
    # the SQL stores keep such strings with U+FFFD in place of NUL instead of failing the run.
    run = await backend.new_execution()
    text = "before\u0000after"
    stored = text if backend.kind == "memory" else "before\ufffdafter"
    checkpoint = Checkpoint(run, number=1, seq=1, created_at=T0, records=[record("a", output=text)])
    await backend.journal.save_checkpoint(checkpoint, [ev(run, 1, data={"output": text})])

    assert (await backend.journal.read_events(run, 0, 10))[0].data == {"output": stored}
    assert (await backend.journal.load_checkpoints(run))[0].records[0].output == stored


async def test_a_failed_write_fails_only_its_own_run(backend: Backend) -> None:
    if not isinstance(backend.journal, SqlJournal):
        pytest.skip("batches are the SQL journal's")
    good, bad = await backend.new_execution(), await backend.new_execution()
    checkpoint = Checkpoint(bad, number=1, seq=1, created_at=T0, records=[record("a")])
    await backend.journal.save_checkpoint(checkpoint, [ev(bad, 1)])
    again = Checkpoint(bad, number=1, seq=2, created_at=T0, records=[record("b")])

    # Both submissions land in one batch: the writer runs only after both are queued.
    results = await asyncio.gather(
        backend.journal.emit([ev(good, 1)]),
        backend.journal.save_checkpoint(again, [ev(bad, 2)]),  # its number: a duplicate key
        return_exceptions=True,
    )

    assert isinstance(results[1], JournalRejected), results
    assert results[0] is None
    assert [e.seq for e in await backend.journal.read_events(good, 0, 10)] == [1]
    assert [e.seq for e in await backend.journal.read_events(bad, 0, 10)] == [1]


async def test_a_write_stored_already_is_not_stored_twice(backend: Backend) -> None:
    # A writer that lost the answer to a commit sends the same write again.
    run = await backend.new_execution()
    first = [ev(run, 1, E.WORKFLOW_STARTED), ev(run, 2)]
    await backend.journal.emit(first)

    await backend.journal.emit(first)

    assert await backend.journal.read_events(run, 0, 10) == first
    assert await backend.last_seq(run) == 2


async def test_a_write_repeating_stored_events_stores_the_rest(backend: Backend) -> None:
    # A run's write was cancelled after it reached the writer: the run cannot know whether it
    # was stored, keeps the events, and sends them again with the next ones.
    run = await backend.new_execution()
    await backend.journal.emit([ev(run, 1), ev(run, 2)])
    checkpoint = Checkpoint(run, number=1, seq=4, created_at=T0, records=[record("a")])

    await backend.journal.save_checkpoint(
        checkpoint, [ev(run, 1), ev(run, 2), ev(run, 3), ev(run, 4, E.CHECKPOINT_CREATED)]
    )

    assert [e.seq for e in await backend.journal.read_events(run, 0, 10)] == [1, 2, 3, 4]
    assert await backend.journal.load_checkpoints(run) == [checkpoint]
    assert await backend.last_seq(run) == 4


async def test_a_write_that_would_leave_a_gap_is_refused(backend: Backend) -> None:
    run = await backend.new_execution()
    await backend.journal.emit([ev(run, 1)])

    with pytest.raises(JournalRejected):
        await backend.journal.emit([ev(run, 3)])

    assert [e.seq for e in await backend.journal.read_events(run, 0, 10)] == [1]
    await backend.journal.emit([ev(run, 2)])  # the right next seq still goes in


async def test_a_write_under_an_old_generation_is_fenced(backend: Backend) -> None:
    if not backend.sql:
        pytest.skip("leases are the SQL stores'")
    run = await backend.new_execution()  # generation 0
    await backend.journal.emit([ev(run, 1)], fence=0)

    with pytest.raises(LeaseLost):
        await backend.journal.emit([ev(run, 2)], fence=7)

    assert await backend.last_seq(run) == 1


# -- group commit ----------------------------------------------------------------------------


async def test_concurrent_submitters_share_commits(backend: Backend) -> None:
    if not isinstance(backend.journal, SqlJournal):
        pytest.skip("group commit is the SQL journal's")
    runs = [await backend.new_execution() for _ in range(20)]
    steps = 3
    before = backend.journal.commits

    async def drive(execution_id: str) -> None:
        for seq in range(1, steps + 1):
            await backend.journal.emit([ev(execution_id, seq)])

    await asyncio.gather(*(drive(run) for run in runs))

    submissions = len(runs) * steps
    commits = backend.journal.commits - before
    assert 1 <= commits < submissions
    for run in runs:
        assert [e.seq for e in await backend.journal.read_events(run, 0, 10)] == [1, 2, 3]
        assert (await backend.row(run)).last_seq == steps


# -- the real scheduler over each store ------------------------------------------------------


def scheduler(backend: Backend, registry: Registry | None = None) -> Scheduler:
    registry = registry or core_registry(NodeResources())
    return Scheduler(
        executors=registry.executors,
        events=backend.journal,
        checkpoints=backend.journal,
        clock=FakeClock(),
        node_types=registry.node_types,
        seed=7,
    )


async def run_once(
    backend: Backend,
    sched: Scheduler,
    execution_id: str,
    document: dict[str, Any],
    inputs: Any,
    *,
    resume: bool = False,
) -> Any:
    if resume:
        await backend.retried(execution_id)
    request = RunRequest(
        execution_id=execution_id,
        plan=sched.plan(document),
        inputs=inputs,
        config=RunConfig(),
        resume=resume,
        last_seq=await backend.last_seq(execution_id),
        prior_attempts=await backend.prior_attempts(execution_id),
    )
    return await sched.run(request)


async def test_a_scheduler_run_completes_and_the_rows_follow(backend: Backend) -> None:
    run = await backend.new_execution(DOCUMENT)

    outcome = await run_once(backend, scheduler(backend), run, DOCUMENT, {"x": 21})

    assert outcome.status is ExecutionStatus.COMPLETED
    assert outcome.outputs == {"n": 42, "seen": 42}
    logged = await backend.journal.read_events(run, 0, 1000)
    assert [e.seq for e in logged] == list(range(1, len(logged) + 1))
    assert logged[0].type is E.WORKFLOW_STARTED and logged[-1].type is E.WORKFLOW_COMPLETED
    done = {r.key: r for c in await backend.journal.load_checkpoints(run) for r in c.records}
    assert done["double"].output == 42 and done["check"].branch == "true"
    assert done["vars"].set_vars == {"seen": 42}
    if not backend.sql:
        return
    row = await backend.row(run)
    assert row.status is ExecutionStatus.COMPLETED
    assert row.outputs == {"n": 42, "seen": 42} and row.error is None
    assert row.last_seq == len(logged)
    assert row.progress == models.Progress(completed=7, total=7, percent=100.0)
    assert row.started_at is not None and row.finished_at is not None
    nodes = {n.node_key: n for n in row.nodes}
    assert set(nodes) == {"start", "double", "check", "big", "small", "vars", "end"}
    assert nodes["small"].status is NodeStatus.SKIPPED and nodes["small"].started_at is None
    ran = [n for key, n in nodes.items() if key != "small"]
    assert all(n.status is NodeStatus.COMPLETED and n.attempt == 1 for n in ran)
    assert all(n.started_at is not None and n.finished_at is not None for n in ran)
    assert nodes["double"].output == 42
    assert nodes["big"].output == {"size": "big", "n": 42}
    assert row.nodes[-1].node_key == "small"  # never started: listed last


async def test_a_failing_run_ends_failed_with_its_error(backend: Backend) -> None:
    document = workflow(
        [node("start", "start"), node("boom", "fail", message="no luck"), node("after")],
        [edge("start", "boom"), edge("boom", "after")],
    )
    run = await backend.new_execution(document)

    outcome = await run_once(backend, scheduler(backend), run, document, {})

    assert outcome.status is ExecutionStatus.FAILED
    assert outcome.error is not None and "no luck" in str(outcome.error)
    assert outcome.nodes.get("after") is not NodeStatus.COMPLETED
    logged = await backend.journal.read_events(run, 0, 1000)
    assert logged[-1].type is E.WORKFLOW_FAILED
    if not backend.sql:
        return
    row = await backend.row(run)
    assert row.status is ExecutionStatus.FAILED
    assert row.error == outcome.error and row.outputs is None
    assert row.finished_at is not None and row.last_seq == len(logged)
    nodes = {n.node_key: n for n in row.nodes}
    assert nodes["boom"].status is NodeStatus.FAILED
    assert nodes["boom"].error is not None and nodes["boom"].error["code"] == "fail_node"
    assert "after" not in nodes or nodes["after"].status is not NodeStatus.COMPLETED


async def test_resume_from_stored_checkpoints_skips_completed_nodes(backend: Backend) -> None:
    registry, probe = probe_registry(ProbeExecutor())
    document = workflow(
        [
            node("start", "start"),
            node("first", "probe", value="one"),
            node("flaky", "probe", value="two", fail_times=1),
            node("end", "end", outputs={"a": "{{ first.output }}", "b": "{{ flaky.output }}"}),
        ],
        [edge("start", "first"), edge("first", "flaky"), edge("flaky", "end")],
    )
    run = await backend.new_execution(document)
    sched = scheduler(backend, registry)

    failed = await run_once(backend, sched, run, document, {})
    assert failed.status is ExecutionStatus.FAILED
    seq_before = await backend.last_seq(run)

    resumed = await run_once(backend, sched, run, document, {}, resume=True)

    assert resumed.status is ExecutionStatus.COMPLETED
    assert resumed.outputs == {"a": "one", "b": "two"}
    assert probe.calls == {"first": 1, "flaky": 2}
    later = await backend.journal.read_events(run, seq_before, 1000)
    assert later[0].seq == seq_before + 1 and later[0].type is E.WORKFLOW_RESUMED
    started = [(e.node_id, e.data["attempt"]) for e in later if e.type is E.NODE_STARTED]
    assert started == [("flaky", 2), ("end", 1)]
    if not backend.sql:
        return
    row = await backend.row(run)
    assert row.status is ExecutionStatus.COMPLETED and row.error is None
    assert row.outputs == {"a": "one", "b": "two"}
    assert row.last_seq == seq_before + len(later)
    attempts = {n.node_key: (n.status, n.attempt) for n in row.nodes}
    assert attempts == {
        "start": (NodeStatus.COMPLETED, 1),
        "first": (NodeStatus.COMPLETED, 1),
        "flaky": (NodeStatus.COMPLETED, 2),
        "end": (NodeStatus.COMPLETED, 1),
    }


# -- node runs -------------------------------------------------------------------------------


async def test_node_steps_are_listed_across_batches_and_attempts(backend: Backend) -> None:
    run = await backend.new_execution()
    failure = {"code": "node_error", "message": "parse failed", "node_id": "a"}
    retry_error = {"code": "node_error", "message": "attempt 1 failed", "node_id": "a"}

    def step(seq: int, name: str, error: dict[str, Any] | None = None) -> Event:
        data: dict[str, Any] = {"node_id": "a", "name": name, "ok": error is None}
        if error is not None:
            data["error"] = error
        return ev(run, seq, E.NODE_STEP, node_id="a", level=0, data=data)

    await backend.journal.emit(
        [
            ev(run, 1, E.WORKFLOW_STARTED),
            ev(run, 2, E.NODE_STARTED, node_id="a", level=0, data={"attempt": 1}),
            step(3, "fetch"),
        ]
    )
    retry = {"attempt": 1, "next_attempt": 2, "retry": 1, "delay_ms": 1.0, "error": retry_error}
    await backend.journal.emit(
        [step(4, "parse", failure), ev(run, 5, E.NODE_RETRY, node_id="a", level=0, data=retry)]
    )
    # A batch of a step only (ctx.step forces its own write): the rest of the row stays.
    await backend.journal.emit([step(6, "parse")])
    if backend.sql:
        a = next(n for n in (await backend.row(run)).nodes if n.node_key == "a")
        assert (a.status, a.attempt, a.error) == (NodeStatus.RUNNING, 2, retry_error)
        assert [s.name for s in a.steps] == ["fetch", "parse", "parse"]
    # A new attempt (a takeover's) resets the row but keeps the steps finished before it.
    await backend.journal.emit(
        [
            ev(run, 7, E.NODE_STARTED, node_id="a", level=0, data={"attempt": 3}),
            step(8, "store"),
            ev(run, 9, E.NODE_COMPLETED, node_id="a", level=0, data={"output": 1, "attempt": 3}),
        ]
    )

    logged = await backend.journal.read_events(run, 0, 100)
    assert [e.data["name"] for e in logged if e.type is E.NODE_STEP] == [
        "fetch",
        "parse",
        "parse",
        "store",
    ]
    if not backend.sql:
        return  # the in-memory store keeps the log only: no node-run rows to read
    a = next(n for n in (await backend.row(run)).nodes if n.node_key == "a")
    assert (a.status, a.attempt, a.output, a.error) == (NodeStatus.COMPLETED, 3, 1, None)
    assert [(s.name, s.ok, s.error) for s in a.steps] == [
        ("fetch", True, None),
        ("parse", False, failure),
        ("parse", True, None),
        ("store", True, None),
    ]
    finished = [T0 + timedelta(milliseconds=seq) for seq in (3, 4, 6, 8)]
    assert [s.finished_at for s in a.steps] == finished


async def test_a_step_of_a_node_without_a_row_is_kept(backend: Backend) -> None:
    if not backend.sql:
        pytest.skip("node-run rows are the SQL stores'")
    run = await backend.new_execution()
    data = {"node_id": "lone", "name": "only", "ok": True}

    await backend.journal.emit([ev(run, 1, E.NODE_STEP, node_id="lone", level=0, data=data)])

    (lone,) = (await backend.row(run)).nodes
    assert (lone.node_key, lone.status) == ("lone", NodeStatus.RUNNING)
    assert [s.name for s in lone.steps] == ["only"]


async def test_steps_are_appended_to_a_row_an_earlier_batch_wrote(backend: Backend) -> None:
    run = await backend.new_execution()
    data = {"node_id": "a", "name": "fetch", "ok": True}
    await backend.journal.emit(
        [
            ev(run, 1, E.WORKFLOW_STARTED),
            ev(run, 2, E.NODE_STARTED, node_id="a", level=0, data={"attempt": 1}),
        ]
    )
    # ctx.step forces a write of its own: the step comes in a batch after the node's start.
    await backend.journal.emit([ev(run, 3, E.NODE_STEP, node_id="a", level=0, data=data)])

    if not backend.sql:
        return  # the in-memory store keeps the log only: no node-run rows to read
    (a,) = (await backend.row(run)).nodes
    assert (a.status, [s.name for s in a.steps]) == (NodeStatus.RUNNING, ["fetch"])


async def test_node_usage_is_its_latest_records_and_the_run_sums_it(backend: Backend) -> None:
    run = await backend.new_execution()
    first_call = {"api_calls": 1, "tokens": 10, "cost_usd": 0.001}
    both_calls = {"api_calls": 2, "tokens": 25, "cost_usd": 0.0025}

    def started(seq: int, key: str, attempt: int = 1) -> Event:
        return ev(run, seq, E.NODE_STARTED, node_id=key, level=0, data={"attempt": attempt})

    def completed(seq: int, key: str, attempt: int = 1) -> Event:
        data = {"output": key, "attempt": attempt}
        return ev(run, seq, E.NODE_COMPLETED, node_id=key, level=0, data=data)

    def checkpoint(number: int, seq: int, *records: NodeRecord) -> Checkpoint:
        return Checkpoint(run, number=number, seq=seq, created_at=T0, records=list(records))

    def created(seq: int, number: int) -> Event:
        return ev(run, seq, E.CHECKPOINT_CREATED, data={"checkpoint": number})

    await backend.journal.emit([ev(run, 1, E.WORKFLOW_STARTED), started(2, "a"), started(3, "b")])
    # A durable step of a saves a running record with what a spent so far (ctx.step).
    step = ev(run, 4, E.NODE_STEP, node_id="a", level=0, data={"name": "ask", "ok": True})
    running = record("a", status=NodeStatus.RUNNING, output=None, usage=first_call)
    await backend.journal.save_checkpoint(checkpoint(1, 5, running), [step, created(5, 1)])
    retry = {"attempt": 1, "next_attempt": 2, "retry": 1, "delay_ms": 1.0, "error": None}
    # A new attempt, with no record: the usage stays what the last record said.
    await backend.journal.emit(
        [ev(run, 6, E.NODE_RETRY, node_id="a", level=0, data=retry), started(7, "a", 2)]
    )
    if backend.sql:
        a = next(n for n in (await backend.row(run)).nodes if n.node_key == "a")
        assert (a.status, a.attempt, a.usage) == (
            NodeStatus.RUNNING,
            2,
            models.NodeUsage(**first_call),
        )
    # a's attempt 2 completes (its record sums both attempts), b spends nothing.
    await backend.journal.save_checkpoint(
        checkpoint(2, 10, record("a", attempt=2, usage=both_calls), record("b")),
        [completed(8, "a", 2), completed(9, "b"), created(10, 2)],
    )
    # A checkpoint after its nodes' events (every_level): c's row keeps its other columns; d,
    # whose events the store never saw, gets a row from its record.
    await backend.journal.emit([started(11, "c"), completed(12, "c")])
    await backend.journal.save_checkpoint(
        checkpoint(
            3,
            13,
            record("c", output="c", usage={"api_calls": 1}),
            record("loop[0].d", status=NodeStatus.FAILED, usage={"tokens": 5}),
        ),
        [created(13, 3)],
    )

    saved = {c.number: c for c in await backend.journal.load_checkpoints(run)}
    assert saved[2].records[0].usage == both_calls
    assert saved[3].records[1].usage == {"tokens": 5}
    if not backend.sql:
        return  # the in-memory store keeps the checkpoints only: no node-run rows to read
    execution = await backend.row(run)
    nodes = {n.node_key: n for n in execution.nodes}
    assert {key: (n.status, n.attempt, n.usage) for key, n in nodes.items()} == {
        "a": (NodeStatus.COMPLETED, 2, models.NodeUsage(**both_calls)),
        "b": (NodeStatus.COMPLETED, 1, None),
        "c": (NodeStatus.COMPLETED, 1, models.NodeUsage(api_calls=1)),
        "loop[0].d": (NodeStatus.FAILED, 1, models.NodeUsage(tokens=5)),
    }
    assert (nodes["c"].output, nodes["c"].finished_at) == ("c", T0 + timedelta(milliseconds=12))
    assert [s.name for s in nodes["a"].steps] == ["ask"]
    assert nodes["loop[0].d"].node_id == "d"
    assert execution.usage == models.ExecutionUsage(
        nodes=5, api_calls=3, tokens=30, cost_usd=0.0025
    )


# -- forms -----------------------------------------------------------------------------------


async def test_a_form_request_keeps_what_it_is_about(backend: Backend) -> None:
    if not backend.sql:
        pytest.skip("form rows are the SQL stores'")
    run = await backend.new_execution()
    about = {"tool": "refund", "arguments": {"order": "A-1", "cents": 1250}, "reasoning": "late"}

    def requested(seq: int, node_key: str, **extra: Any) -> Event:
        data = {
            "form_id": f"{run}-{node_key}",
            "kind": "approval",
            "prompt": "Run it?",
            "fields": {"type": "object"},
            "approvers": None,
            "quorum": 1,
            "allow_self_approval": False,
            "on_timeout": "fail",
            "deadline": None,
            **extra,
        }
        return ev(run, seq, E.FORM_REQUESTED, node_id=node_key, level=0, data=data)

    # An agent's tool call carries its context; an approval node's has none, or says null.
    await backend.journal.emit(
        [
            ev(run, 1, E.WORKFLOW_STARTED),
            requested(2, "agent", context=about),
            requested(3, "vote"),
            requested(4, "check", context=None),
        ]
    )

    assert backend.engine is not None
    shown: dict[str, Any] = {}  # as GET /v1/forms/{id} answers it
    async with backend.engine.connect() as conn:
        for key in ("agent", "vote", "check"):
            view = await forms.get(conn, f"{run}-{key}")
            assert view is not None
            shown[key] = view.model_dump(mode="json")["context"]
    assert shown == {"agent": about, "vote": None, "check": None}
