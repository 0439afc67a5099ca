"""Execution queries on real databases: a fresh Postgres clone and a fresh SQLite file per test."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.status import ExecutionStatus, Move, NodeStatus
from app.errors import CursorInvalid
from app.store import executions as store
from app.store import tables, workflows
from app.store.db import is_postgres
from tests.integration.rows import OTHER, T0, WORKFLOW, S, add, status_of

# -- insert and read -------------------------------------------------------------------------


async def test_inserts_take_increasing_queue_positions(engine: AsyncEngine) -> None:
    positions = []
    for _ in range(4):
        async with engine.begin() as conn:
            positions.append(
                await store.insert_execution(
                    conn,
                    execution_id=str(uuid.uuid4()),
                    workflow_id=WORKFLOW,
                    workflow_version=1,
                    inputs={},
                    config={},
                    now=T0,
                )
            )
    assert positions == sorted(positions) and len(set(positions)) == 4


async def test_concurrent_inserts_get_distinct_queue_positions(engine: AsyncEngine) -> None:
    async def insert() -> str:
        async with engine.begin() as conn:
            return await add(conn)

    ids = await asyncio.gather(*(insert() for _ in range(10)))

    async with engine.connect() as conn:
        rows = (await conn.execute(select(tables.executions.c.queue_seq))).scalars().all()
        queued = await store.queued_count(conn)
    assert len(set(rows)) == len(set(ids)) == 10
    assert queued == 10


async def test_a_new_execution_reads_back_whole(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        execution_id = await add(
            conn, inputs=[1, "two", {"three": None}], config={"timeout_s": 5}, started_by="ann"
        )
        unknown = add(conn, workflow_id="no-such-workflow")
        with pytest.raises(IntegrityError):
            async with conn.begin_nested():
                await unknown

    async with engine.connect() as conn:
        execution = await store.get_execution(conn, execution_id)
        assert await store.get_execution(conn, "missing") is None
    assert execution is not None
    assert execution.status is S.QUEUED
    assert (execution.workflow_id, execution.workflow_version) == (WORKFLOW, 1)
    assert execution.inputs == [1, "two", {"three": None}]
    assert execution.config == {"timeout_s": 5}
    assert execution.created_at == T0 and execution.started_at is None
    assert execution.last_seq == 0 and execution.nodes == []
    assert (execution.progress.completed, execution.progress.total) == (0, 0)
    assert execution.progress.percent == 0.0
    assert execution.outputs is None and execution.error is None


async def test_nodes_and_progress_come_with_the_execution(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        execution_id = await add(conn, status=S.RUNNING)
        await conn.execute(
            tables.executions.update()
            .where(tables.executions.c.id == execution_id)
            .values(completed_nodes=1, total_nodes=3, last_seq=9)
        )
        await conn.execute(
            tables.node_runs.insert(),
            [
                node_run(execution_id, "zeta", NodeStatus.COMPLETED, 1, T0, output={"v": 1}),
                node_run(execution_id, "skipped", NodeStatus.SKIPPED, 0, None),
                node_run(execution_id, "alpha", NodeStatus.RUNNING, 2, T0 + timedelta(seconds=1)),
                node_run(execution_id, "beta", NodeStatus.FAILED, 1, T0, error={"code": "x"}),
            ],
        )

    async with engine.connect() as conn:
        execution = await store.get_execution(conn, execution_id)
        bare = await store.get_execution(conn, execution_id, with_nodes=False)
    assert execution is not None and bare is not None
    assert [n.node_key for n in execution.nodes] == ["beta", "zeta", "alpha", "skipped"]
    zeta = execution.nodes[1]
    assert (zeta.status, zeta.attempt, zeta.output, zeta.started_at) == (
        NodeStatus.COMPLETED,
        1,
        {"v": 1},
        T0,
    )
    assert execution.nodes[0].error == {"code": "x"}
    assert execution.progress.model_dump() == {"completed": 1, "total": 3, "percent": 33.3}
    assert execution.last_seq == 9
    assert bare.nodes == [] and bare.progress == execution.progress


def node_run(
    execution_id: str,
    key: str,
    status: NodeStatus,
    attempt: int,
    started_at: datetime | None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "execution_id": execution_id,
        "node_key": key,
        "node_id": key.rsplit(".", 1)[-1],
        "status": status.value,
        "attempt": attempt,
        "started_at": started_at,
        "output": extra.get("output"),
        "error": extra.get("error"),
    }


# -- idempotency -----------------------------------------------------------------------------


async def test_idempotency_keys_are_recorded_once(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        execution_id = await add(conn)
        assert await store.find_idempotency(conn, WORKFLOW, "k1") is None
        await store.insert_idempotency(
            conn,
            workflow_id=WORKFLOW,
            key="k1",
            request_hash="h1",
            execution_id=execution_id,
            now=T0,
        )
    async with engine.connect() as conn:
        assert await store.find_idempotency(conn, WORKFLOW, "k1") == ("h1", execution_id)
        assert await store.find_idempotency(conn, OTHER, "k1") is None  # keys are per workflow

    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await store.insert_idempotency(
                conn,
                workflow_id=WORKFLOW,
                key="k1",
                request_hash="h2",
                execution_id=execution_id,
                now=T0,
            )


async def test_concurrent_requests_with_one_key_create_one_execution(
    engine: AsyncEngine,
) -> None:
    async def submit(execution_id: str) -> bool:
        try:
            async with engine.begin() as conn:
                await add(conn, execution_id=execution_id)
                await store.insert_idempotency(
                    conn,
                    workflow_id=WORKFLOW,
                    key="same",
                    request_hash="h",
                    execution_id=execution_id,
                    now=T0,
                )
        except IntegrityError:
            return False
        return True

    candidates = [f"run-{i}" for i in range(4)]
    won = await asyncio.gather(*(submit(c) for c in candidates))

    assert sorted(won) == [False, False, False, True]
    winner = candidates[won.index(True)]
    async with engine.connect() as conn:
        count = await conn.scalar(select(func.count()).select_from(tables.executions))
        assert count == 1
        assert await store.find_idempotency(conn, WORKFLOW, "same") == ("h", winner)


# -- status changes --------------------------------------------------------------------------


async def test_a_move_changes_only_a_status_it_applies_to(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        execution_id = await add(conn, status=S.RUNNING)
        before = await conn.scalar(select(tables.executions.c.updated_at))

    async with engine.begin() as conn:
        assert await store.move(conn, execution_id, Move.REQUEST_PAUSE) is S.PAUSING
        assert await store.move(conn, execution_id, Move.REQUEST_PAUSE) is None
        assert await store.move(conn, "missing", Move.REQUEST_PAUSE) is None
        assert await store.move(conn, execution_id, Move.RESUME) is None  # not paused
    async with engine.connect() as conn:
        after = await conn.scalar(select(tables.executions.c.updated_at))
    assert after is not None and before is not None and after > before
    assert await status_of(engine, execution_id) is S.PAUSING


async def test_a_move_sets_its_resume_reason_and_fields(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        execution_id = await add(conn, status=S.FAILED)
        moved = await store.move(conn, execution_id, Move.RETRY, cancel_requested=False, error=None)
    assert moved is S.QUEUED
    async with engine.connect() as conn:
        reason = await conn.scalar(
            select(tables.executions.c.resume_reason).where(tables.executions.c.id == execution_id)
        )
    assert reason == "retry"
    async with engine.begin() as conn:
        with pytest.raises(TypeError, match="workflow_id"):
            await store.move(conn, execution_id, Move.CLAIM, workflow_id="x")


async def test_racing_moves_have_exactly_one_winner(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        runs = [await add(conn, status=S.PAUSED) for _ in range(5)]

    async def change(execution_id: str, move: Move) -> bool:
        async with engine.begin() as conn:
            return await store.move(conn, execution_id, move) is not None

    for execution_id in runs:
        resume, hold = await asyncio.gather(
            change(execution_id, Move.RESUME), change(execution_id, Move.RESUME)
        )
        assert resume != hold
        assert await status_of(engine, execution_id) is S.QUEUED


async def test_a_move_waiting_on_another_sees_its_result(engine: AsyncEngine) -> None:
    if not is_postgres(engine):
        pytest.skip("row locks: Postgres")
    async with engine.begin() as conn:
        execution_id = await add(conn, status=S.RUNNING)

    async with engine.connect() as first, engine.connect() as second, engine.connect() as watch:
        pid = await second.scalar(text("SELECT pg_backend_pid()"))
        assert await store.move(first, execution_id, Move.REQUEST_PAUSE) is S.PAUSING
        loser = asyncio.create_task(store.move(second, execution_id, Move.REQUEST_PAUSE))
        # The second UPDATE blocks on the first one's row lock (checked, not assumed).
        while not loser.done():
            waiting = await watch.scalar(
                text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": pid},
            )
            await watch.rollback()
            if waiting == "Lock":
                break
        assert not loser.done()
        await first.commit()
        assert await loser is None
        await second.commit()
    assert await status_of(engine, execution_id) is S.PAUSING


# -- lists -----------------------------------------------------------------------------------


async def test_list_filters_and_pages_newest_first(engine: AsyncEngine) -> None:
    made: list[tuple[str, str, ExecutionStatus]] = []
    async with engine.begin() as conn:
        for i in range(9):
            workflow_id = WORKFLOW if i % 3 else OTHER
            status = [S.QUEUED, S.RUNNING, S.COMPLETED][i % 3]
            made.append(
                (await add(conn, workflow_id=workflow_id, status=status), workflow_id, status)
            )
    newest_first = list(reversed(made))

    async def walk(limit: int, **filters: Any) -> tuple[list[str], list[int]]:
        ids: list[str] = []
        sizes: list[int] = []
        cursor = None
        while True:
            async with engine.connect() as conn:
                page = await store.list_executions(conn, limit=limit, cursor=cursor, **filters)
            ids += [e.id for e in page.items]
            sizes.append(len(page.items))
            if page.next_cursor is None:
                return ids, sizes
            cursor = page.next_cursor

    assert await walk(4) == ([m[0] for m in newest_first], [4, 4, 1])
    assert await walk(9) == ([m[0] for m in newest_first], [9])
    ours = [m[0] for m in newest_first if m[1] == WORKFLOW]
    assert await walk(2, workflow_id=WORKFLOW) == (ours, [2, 2, 2])
    done_or_queued = [m[0] for m in newest_first if m[2] in (S.COMPLETED, S.QUEUED)]
    assert (await walk(5, statuses=[S.COMPLETED, S.QUEUED]))[0] == done_or_queued
    both = [m[0] for m in newest_first if m[1] == OTHER and m[2] is S.COMPLETED]
    assert (await walk(5, workflow_id=OTHER, statuses=[S.COMPLETED]))[0] == both
    assert (await walk(5, workflow_id="nobody"))[0] == []

    async with engine.connect() as conn:
        summary = (await store.list_executions(conn, limit=1, cursor=None)).items[0]
        with pytest.raises(ValueError, match="limit"):
            await store.list_executions(conn, limit=0, cursor=None)
    assert summary.id == newest_first[0][0] and summary.progress.percent == 0.0


@pytest.mark.parametrize(
    "cursor", ["garbage", workflows.encode_cursor("w", T0.isoformat(), "id"), "WyJ4IiwiMSJd"]
)
async def test_bad_execution_cursors_are_refused(engine: AsyncEngine, cursor: str) -> None:
    async with engine.connect() as conn:
        with pytest.raises(CursorInvalid):
            await store.list_executions(conn, limit=5, cursor=cursor)


# -- the deadline sweep ----------------------------------------------------------------------


async def set_deadline(engine: AsyncEngine, execution_id: str, deadline: datetime) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            update(tables.executions)
            .where(tables.executions.c.id == execution_id)
            .values(deadline_at=deadline)
        )


async def test_the_sweep_finds_waiting_runs_past_their_deadline_most_overdue_first(
    engine: AsyncEngine,
) -> None:
    now = T0 + timedelta(hours=1)
    async with engine.begin() as conn:
        late, later, early, running, _without_deadline = [
            await add(conn, status=status)
            for status in (S.WAITING, S.WAITING, S.WAITING, S.RUNNING, S.WAITING)
        ]
    await set_deadline(engine, late, now - timedelta(seconds=1))
    await set_deadline(engine, later, now - timedelta(minutes=5))
    await set_deadline(engine, early, now + timedelta(seconds=1))
    await set_deadline(engine, running, now - timedelta(minutes=9))

    async with engine.connect() as conn:
        assert await store.overdue_waiting(conn, now) == [later, late]
        assert await store.overdue_waiting(conn, now, limit=1) == [later]


async def test_the_sweep_reads_its_partial_index_not_the_table(engine: AsyncEngine) -> None:
    if not is_postgres(engine):
        pytest.skip("EXPLAIN of the Postgres plan")
    async with engine.begin() as conn:
        # Many finished runs, many waiting without a deadline, a few with one.
        await conn.execute(
            text(
                "INSERT INTO executions (id, workflow_id, workflow_version, status, inputs, "
                "config, created_at, updated_at, deadline_at) SELECT gen_random_uuid()::text, "
                "'wf-1', 1, CASE WHEN i <= 30000 THEN 'completed' ELSE 'waiting' END, '{}', "
                "'{}', now(), now(), CASE WHEN i % 100 = 0 THEN now() END "
                "FROM generate_series(1, 40000) AS i"
            )
        )
        await conn.execute(text("ANALYZE executions"))
    statements: list[tuple[str, Any]] = []

    def seen(*args: Any) -> None:
        statements.append((args[2], args[3]))  # (conn, cursor, statement, parameters, ...)

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        async with engine.connect() as conn:
            due = await store.overdue_waiting(conn, datetime.now(UTC) + timedelta(seconds=1))
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)
    assert len(due) == 100
    sql, parameters = statements[-1]
    async with engine.connect() as conn:
        rows = await conn.exec_driver_sql("EXPLAIN " + sql, parameters)
        plan = "\n".join(row[0] for row in rows)
    assert "Seq Scan" not in plan, plan
    assert "ix_executions_waiting_deadline" in plan, plan


# -- attempts and checkpoints ----------------------------------------------------------------


async def test_node_attempts_and_checkpoints(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        execution_id, other = await add(conn, status=S.RUNNING), await add(conn)
        await conn.execute(
            tables.node_runs.insert(),
            [
                node_run(execution_id, "start", NodeStatus.COMPLETED, 1, T0),
                node_run(execution_id, "loop[1].work", NodeStatus.RUNNING, 3, T0),
                node_run(execution_id, "never", NodeStatus.SKIPPED, 0, None),
                node_run(other, "start", NodeStatus.COMPLETED, 7, T0),
            ],
        )
        await conn.execute(
            tables.checkpoints.insert(),
            [
                {
                    "execution_id": execution_id,
                    "number": number,
                    "seq": seq,
                    "created_at": T0 + timedelta(seconds=number),
                    "records": [
                        {"key": key, "node_id": key, "status": "completed"} for key in keys
                    ],
                }
                for number, seq, keys in [(2, 9, ["b", "c"]), (1, 4, ["start"])]
            ],
        )

    async with engine.connect() as conn:
        assert await store.node_attempts(conn, execution_id) == {"start": 1, "loop[1].work": 3}
        assert await store.node_attempts(conn, "missing") == {}
        listed = await store.list_checkpoints(conn, execution_id)
        assert await store.list_checkpoints(conn, other) == []
    assert [(c.number, c.seq, c.nodes) for c in listed] == [(1, 4, ["start"]), (2, 9, ["b", "c"])]
    assert listed[0].created_at == T0 + timedelta(seconds=1)
