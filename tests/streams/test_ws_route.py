"""WS /v1/executions/{id}/ws, driven through the ASGI app with fake receive/send."""

from __future__ import annotations

from fastapi import FastAPI

from tests.streams.asgi import WsCall
from tests.streams.runs import QUICK, SLOW, cancel, finished_run, services_of, start_run


def ws_path(execution_id: str) -> str:
    return f"/v1/executions/{execution_id}/ws"


async def test_replays_a_finished_run_then_closes_normally(app: FastAPI) -> None:
    execution = await finished_run(app)
    call = WsCall(app, ws_path(execution.id))

    await call.accepted()
    frames = await call.frames()
    await call.finished()

    assert call.close_code == 1000
    assert [f["seq"] for f in frames] == list(range(1, execution.last_seq + 1))
    stored = await services_of(app).bus.read(execution.id, 0, 1000)
    assert frames == [event.to_dict() for event in stored]
    assert frames[-1]["type"] == "workflow.completed"


async def test_after_resumes_from_a_position(app: FastAPI) -> None:
    execution = await finished_run(app)
    call = WsCall(app, ws_path(execution.id), query={"after": "4"})

    await call.accepted()
    frames = await call.frames()

    assert [f["seq"] for f in frames] == list(range(5, execution.last_seq + 1))
    assert call.close_code == 1000


async def test_follows_a_live_run_until_its_terminal_event(app: FastAPI) -> None:
    execution_id = await start_run(app, SLOW)
    call = WsCall(app, ws_path(execution_id))
    await call.accepted()
    first = await call.frames(limit=1)
    assert first[0]["type"] == "workflow.started"

    await cancel(app, execution_id)
    rest = await call.frames()
    await call.finished()

    assert rest[-1]["type"] == "workflow.cancelled"
    assert [f["seq"] for f in first + rest] == list(range(1, rest[-1]["seq"] + 1))
    assert call.close_code == 1000
    assert services_of(app).bus.subscriber_count(execution_id) == 0


async def test_reconnect_mid_run_gets_the_missing_events_once_in_order(app: FastAPI) -> None:
    execution_id = await start_run(app, QUICK)
    first = WsCall(app, ws_path(execution_id))
    await first.accepted()
    head = await first.frames(limit=3)
    first.disconnect()
    await first.finished()

    second = WsCall(app, ws_path(execution_id), query={"after": str(head[-1]["seq"])})
    await second.accepted()
    tail = await second.frames()

    execution = await services_of(app).executions.get(execution_id)
    assert [f["seq"] for f in head + tail] == list(range(1, execution.last_seq + 1))


async def test_unknown_execution_closes_4404(app: FastAPI) -> None:
    call = WsCall(app, ws_path("no-such-run"))

    await call.accepted()
    assert await call.frames() == []
    await call.finished()

    assert call.close_code == 4404
    assert call.close_reason


async def test_an_execution_id_holding_nul_closes_4422(app: FastAPI) -> None:
    call = WsCall(app, ws_path("run\x00"))

    await call.accepted()
    assert await call.frames() == []
    await call.finished()

    assert call.close_code == 4422
    assert "U+0000" in call.close_reason


async def test_bad_after_closes_4422(app: FastAPI) -> None:
    execution = await finished_run(app)
    for after in ("x", "-1", "2.5", "", "99999999999"):
        call = WsCall(app, ws_path(execution.id), query={"after": after})
        await call.accepted()
        assert await call.frames() == []
        await call.finished()
        assert call.close_code == 4422, after


async def test_nothing_after_a_finished_run_closes_1000_at_once(app: FastAPI) -> None:
    execution = await finished_run(app)
    call = WsCall(app, ws_path(execution.id), query={"after": str(execution.last_seq)})

    await call.accepted()
    assert await call.frames() == []
    await call.finished()

    assert call.close_code == 1000


async def test_client_disconnect_releases_the_subscription(app: FastAPI) -> None:
    execution_id = await start_run(app, SLOW)
    bus = services_of(app).bus
    call = WsCall(app, ws_path(execution_id))
    await call.accepted()
    await call.frames(limit=1)
    assert bus.subscriber_count(execution_id) == 1

    call.disconnect()
    await call.finished()

    assert bus.subscriber_count(execution_id) == 0
    await cancel(app, execution_id)
