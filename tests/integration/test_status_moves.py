"""Every statement that changes a run's status, against every status, on both backends.

The domain's table of moves (``app.domain.status.MOVES``) is the one place where the rules live;
the store generates its SQL from it. These tests hold the statements to the table: for each move
a statement makes and each status a run can be in, the run ends in the status the table names,
or keeps its status when the move does not apply.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.events import Event, EventType
from app.domain.status import HAND_BACK_REASON, MOVES, ExecutionStatus, Move
from app.errors import LeaseLost
from app.store import claims, tables
from app.store import executions as store
from app.store import forms as forms_store
from app.store.journal import SqlJournal
from tests.integration.rows import T0, WORKFLOW, add, status_of

S = ExecutionStatus
ALL = list(ExecutionStatus)


def expected(move: Move, status: ExecutionStatus) -> ExecutionStatus:
    return MOVES[move].get(status, status)


async def rows_in_every_status(engine: AsyncEngine, **extra: Any) -> dict[ExecutionStatus, str]:
    async with engine.begin() as conn:
        return {status: await add(conn, status=status, **extra) for status in ALL}


async def event_count(engine: AsyncEngine, execution_id: str) -> int:
    async with engine.connect() as conn:
        found = await conn.execute(
            select(tables.events.c.seq).where(tables.events.c.execution_id == execution_id)
        )
        return len(found.all())


@pytest.mark.parametrize("move", [Move.REQUEST_PAUSE, Move.RESUME, Move.RETRY, Move.CLAIM])
async def test_client_moves_follow_the_table(engine: AsyncEngine, move: Move) -> None:
    runs = await rows_in_every_status(engine)

    for status, execution_id in runs.items():
        async with engine.begin() as conn:
            moved = await store.move(conn, execution_id, move)
        assert (moved is not None) == (status in MOVES[move]), (move, status)
        assert await status_of(engine, execution_id) is expected(move, status), (move, status)


@pytest.mark.parametrize(
    ("move", "event_type"),
    [
        (Move.HOLD, EventType.WORKFLOW_PAUSED),
        (Move.WITHDRAW, EventType.WORKFLOW_CANCELLED),
        (Move.EXPIRE, EventType.WORKFLOW_TIMED_OUT),
        (Move.FAIL, EventType.WORKFLOW_FAILED),
    ],
)
async def test_appended_events_follow_the_table(
    engine: AsyncEngine, move: Move, event_type: EventType
) -> None:
    runs = await rows_in_every_status(engine)
    journal = SqlJournal(engine)
    try:
        for status, execution_id in runs.items():
            event = await journal.append(execution_id, move, event_type)
            applies = status in MOVES[move]
            assert (event is not None) == applies, (move, status)
            assert await status_of(engine, execution_id) is expected(move, status), (move, status)
            assert await event_count(engine, execution_id) == int(applies)
            if event is not None:
                assert event.seq == 1
    finally:
        await journal.close()


async def test_an_appended_event_is_fenced_by_the_generation_it_names(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        execution_id = await add(conn, status=S.RUNNING)
    journal = SqlJournal(engine)
    try:
        refused = await journal.append(execution_id, Move.FAIL, EventType.WORKFLOW_FAILED, fence=3)
        done = await journal.append(execution_id, Move.FAIL, EventType.WORKFLOW_FAILED, fence=0)
    finally:
        await journal.close()
    assert refused is None and done is not None
    assert await status_of(engine, execution_id) is S.FAILED


JOURNAL_CASES = [
    (Move.START, Event("", 1, EventType.WORKFLOW_STARTED, T0), 0),
    (Move.COMPLETE, Event("", 1, EventType.WORKFLOW_COMPLETED, T0), 0),
    (Move.FAIL, Event("", 1, EventType.WORKFLOW_FAILED, T0), 0),
    (Move.CANCEL, Event("", 1, EventType.WORKFLOW_CANCELLED, T0), 0),
    (Move.TIME_OUT, Event("", 1, EventType.WORKFLOW_TIMED_OUT, T0), 0),
    (Move.PAUSE, Event("", 1, EventType.WORKFLOW_PAUSED, T0), 0),
    (
        Move.HAND_BACK,
        Event("", 1, EventType.WORKFLOW_PAUSED, T0, data={"reason": HAND_BACK_REASON}),
        0,
    ),
    (Move.WAIT, Event("", 1, EventType.WORKFLOW_WAITING, T0), 0),
    (Move.WAIT_ANSWERED, Event("", 1, EventType.WORKFLOW_WAITING, T0), 1),
]
# A cancel asked of the driver that it had not acted on when it set the run down: whether the
# run was about to wait (answered or not), pause or be handed back, it is queued to be cancelled.
_SET_DOWN_EVENTS = [case[1] for case in JOURNAL_CASES if case[0] in (Move.PAUSE, Move.HAND_BACK)]
CANCEL_ASKED_CASES = [
    (Move.SET_DOWN_CANCELLED, event, pending, True)
    for event in [Event("", 1, EventType.WORKFLOW_WAITING, T0), *_SET_DOWN_EVENTS]
    for pending in (0, 1)
]
# A cancel asked does not change how a run ends.
ENDING_CASES = [
    (move, event, 0, True)
    for move, event, _ in JOURNAL_CASES
    if move in (Move.COMPLETE, Move.FAIL, Move.CANCEL, Move.TIME_OUT)
]


@pytest.mark.parametrize(
    ("move", "event", "pending", "cancel_asked"),
    [(*case, False) for case in JOURNAL_CASES] + CANCEL_ASKED_CASES + ENDING_CASES,
    ids=lambda c: str(c),
)
async def test_the_journal_follows_the_table(
    engine: AsyncEngine, move: Move, event: Event, pending: int, cancel_asked: bool
) -> None:
    runs = await rows_in_every_status(engine)
    async with engine.begin() as conn:
        await conn.execute(
            update(tables.executions).values(pending_answers=pending, cancel_requested=cancel_asked)
        )
    journal = SqlJournal(engine)
    try:
        for status, execution_id in runs.items():
            mine = Event(execution_id, event.seq, event.type, event.ts, data=event.data)
            driven = status in (S.RUNNING, S.PAUSING)
            if driven:
                await journal.emit([mine])
            else:
                with pytest.raises(LeaseLost):  # only a driven run takes its driver's events
                    await journal.emit([mine])
            assert await status_of(engine, execution_id) is expected(move, status), (move, status)
            assert await event_count(engine, execution_id) == int(driven)
    finally:
        await journal.close()


async def test_claims_follow_the_table(engine: AsyncEngine) -> None:
    queued = await rows_in_every_status(engine)
    claimer = claims.for_engine(engine)
    try:
        taken = await claimer.claim("queued", "r1", 100, 30.0)
        assert [run.id for run in taken] == [queued[S.QUEUED]]
        for status, execution_id in queued.items():
            assert await status_of(engine, execution_id) is expected(Move.CLAIM, status)

        lapsed = await rows_in_every_status(engine)
        async with engine.begin() as conn:
            await conn.execute(
                update(tables.executions)
                .where(tables.executions.c.id.in_(list(lapsed.values())))
                .values(lease_expires_at=datetime(2000, 1, 1, tzinfo=UTC))
            )
        recovered = await claimer.claim("expired", "r2", 100, 30.0)
        # Driven rows without a lease count as lapsed too (queued[RUNNING], queued[PAUSING]).
        driven = {lapsed[S.RUNNING], lapsed[S.PAUSING], queued[S.RUNNING], queued[S.PAUSING]}
        assert {run.id for run in recovered} == driven
        assert {run.resume_reason for run in recovered} == {"recovered"}
        for status, execution_id in lapsed.items():
            assert await status_of(engine, execution_id) is expected(Move.RECOVER, status)
    finally:
        await claimer.close()


async def test_answers_follow_the_table(engine: AsyncEngine) -> None:
    runs = await rows_in_every_status(engine)
    for status, execution_id in runs.items():
        async with engine.begin() as conn:
            await conn.execute(
                tables.forms.insert().values(
                    id=f"form-{execution_id}",
                    execution_id=execution_id,
                    workflow_id=WORKFLOW,
                    node_key="ask",
                    kind="form",
                    status="pending",
                    prompt="?",
                    fields={"type": "object"},
                    on_timeout="fail",
                    created_at=T0,
                )
            )
            form = await forms_store.lock(conn, f"form-{execution_id}")
            assert form is not None
            queued = await forms_store.decide(
                conn, form, status=forms_store.SUBMITTED, answer={"values": {}}, at=T0
            )
        assert queued == (expected(Move.ANSWER, status) is S.QUEUED), status  # nudge claimers
        assert await status_of(engine, execution_id) is expected(Move.ANSWER, status), status


@pytest.mark.parametrize("event", [case[1] for case in CANCEL_ASKED_CASES if case[2] == 0])
async def test_a_cancel_the_driver_had_not_heard_when_it_set_the_run_down_is_not_lost(
    engine: AsyncEngine, event: Event
) -> None:
    # The client's cancel found the run driven, and asked its driver; the driver set the run
    # down (waiting, paused, handed back) before it heard. No replica drives the run now, so
    # the next one to claim it must be the one to cancel it.
    async with engine.begin() as conn:
        execution_id = await add(conn, status=S.RUNNING)
        assert await store.request_cancel(conn, execution_id)
    journal = SqlJournal(engine)
    try:
        await journal.emit([Event(execution_id, event.seq, event.type, event.ts, data=event.data)])
    finally:
        await journal.close()
    assert await status_of(engine, execution_id) is S.QUEUED
    claimer = claims.for_engine(engine)
    try:
        (run,) = await claimer.claim("queued", "r1", 10, 30.0)
    finally:
        await claimer.close()
    assert (run.id, run.cancel_requested, run.resume_reason) == (execution_id, True, "cancelling")
