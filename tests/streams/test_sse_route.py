"""GET /v1/executions/{id}/events, driven through the ASGI app with fake receive/send."""

from __future__ import annotations

import json

from fastapi import FastAPI

from app.api.routes.stream import RETRY_MS
from app.main import create_app
from app.settings import Settings
from tests.streams.asgi import HttpCall, SseMessage
from tests.streams.runs import (
    QUICK,
    SLOW,
    AppFactory,
    cancel,
    finished_run,
    services_of,
    start_run,
)


def events_path(execution_id: str) -> str:
    return f"/v1/executions/{execution_id}/events"


def seqs(messages: list[SseMessage]) -> list[int]:
    return [int(m.id or "-1") for m in messages]


async def test_replay_from_zero_sends_every_event_then_closes(app: FastAPI) -> None:
    execution = await finished_run(app)
    call = HttpCall(app, events_path(execution.id))

    assert await call.start() == 200
    assert call.headers["content-type"].startswith("text/event-stream")
    assert call.headers["cache-control"] == "no-cache"
    assert call.headers["x-accel-buffering"] == "no"
    hint = await call.next_message()
    assert hint is not None
    assert hint.retry == RETRY_MS
    messages = await call.events()
    await call.finished()

    assert call.ended
    assert seqs(messages) == list(range(1, execution.last_seq + 1))
    for message in messages:
        payload = message.payload
        assert payload["seq"] == int(message.id or "")
        assert payload["type"] == message.event
        assert payload["execution_id"] == execution.id
        assert set(payload) == {"seq", "execution_id", "type", "ts", "node_id", "level", "data"}
    assert messages[0].event == "workflow.started"
    assert messages[-1].event == "workflow.completed"
    assert services_of(app).bus.subscriber_count(execution.id) == 0


async def test_data_with_line_breaks_and_unicode_stays_one_message(app: FastAPI) -> None:
    text = "two\nlines\r\nand ü, \u2028, \x85"
    document = {
        "name": "text",
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "say", "type": "transform", "config": {"value": text}},
        ],
        "edges": [{"from": "start", "to": "say"}],
    }
    execution = await finished_run(app, document)
    call = HttpCall(app, events_path(execution.id))
    assert await call.start() == 200

    completed = [m for m in await call.events() if m.event == "node.completed"]

    said = [m.payload["data"]["output"] for m in completed if m.payload["node_id"] == "say"]
    assert said == [text]


async def test_last_event_id_wins_over_after(app: FastAPI) -> None:
    execution = await finished_run(app)
    call = HttpCall(
        app, events_path(execution.id), query={"after": "2"}, headers=[("Last-Event-ID", "5")]
    )

    assert await call.start() == 200
    messages = await call.events()

    assert seqs(messages) == list(range(6, execution.last_seq + 1))


async def test_after_query_sets_the_position_without_last_event_id(app: FastAPI) -> None:
    execution = await finished_run(app)
    call = HttpCall(app, events_path(execution.id), query={"after": "3"})

    assert await call.start() == 200
    assert seqs(await call.events()) == list(range(4, execution.last_seq + 1))


async def test_reconnect_mid_run_gets_the_missing_events_once_in_order(app: FastAPI) -> None:
    execution_id = await start_run(app, QUICK)
    first = HttpCall(app, events_path(execution_id))
    assert await first.start() == 200
    head = await first.events(limit=4)
    first.disconnect()
    await first.finished()

    second = HttpCall(
        app, events_path(execution_id), headers=[("Last-Event-ID", head[-1].id or "")]
    )
    assert await second.start() == 200
    tail = await second.events()
    await second.finished()

    execution = await services_of(app).executions.get(execution_id)
    assert seqs(head) + seqs(tail) == list(range(1, execution.last_seq + 1))
    assert tail[-1].event == "workflow.completed"


async def test_follows_a_live_run_until_its_terminal_event(app: FastAPI) -> None:
    execution_id = await start_run(app, SLOW)
    call = HttpCall(app, events_path(execution_id))
    assert await call.start() == 200
    started = await call.events(limit=1)
    assert started[0].event == "workflow.started"

    await cancel(app, execution_id)
    rest = await call.events()
    await call.finished()

    assert rest[-1].event == "workflow.cancelled"
    assert seqs(started + rest) == list(range(1, int(rest[-1].id or "") + 1))
    assert services_of(app).bus.subscriber_count(execution_id) == 0


async def test_a_slow_client_misses_nothing(make_app: AppFactory) -> None:
    app = await make_app(subscriber_queue=16)
    document = {
        "name": "burst",
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "nap", "type": "delay", "config": {"seconds": 0.3}},
            *QUICK["nodes"][1:],
        ],
        "edges": [
            {"from": "start", "to": "nap"},
            {"from": "nap", "to": "each"},
            {"from": "each", "to": "end"},
        ],
    }
    execution_id = await start_run(app, document)
    call = HttpCall(app, events_path(execution_id))
    assert await call.start() == 200
    head = await call.events(limit=1)
    while head[-1].event != "node.started" or head[-1].payload["node_id"] != "nap":
        head += await call.events(limit=1)
    # Stop reading while the run bursts out more events than the subscriber's queue holds.
    call.hold()
    execution = await services_of(app).executions.wait(execution_id, 10)
    assert execution.status == "completed"
    call.release()
    tail = await call.events()

    assert seqs(head + tail) == list(range(1, execution.last_seq + 1))


async def test_nothing_after_the_terminal_event_is_204(app: FastAPI) -> None:
    execution = await finished_run(app)
    for position in (execution.last_seq, execution.last_seq + 10):
        call = HttpCall(app, events_path(execution.id), headers=[("Last-Event-ID", str(position))])
        assert await call.start() == 204
        assert await call.body() == b""
        await call.finished()


async def test_unknown_execution_is_404_problem(app: FastAPI) -> None:
    call = HttpCall(app, events_path("no-such-run"))

    assert await call.start() == 404
    assert call.headers["content-type"].startswith("application/problem+json")
    problem = json.loads(await call.body())
    assert problem["status"] == 404
    assert problem["code"] == "execution_not_found"


async def test_bad_positions_are_422_problems(app: FastAPI) -> None:
    execution = await finished_run(app)
    requests: list[tuple[dict[str, str], list[tuple[str, str]]]] = [
        ({}, [("Last-Event-ID", "abc")]),
        ({}, [("Last-Event-ID", "-1")]),
        ({"after": "1"}, [("Last-Event-ID", "1.5")]),
        ({"after": "-3"}, []),
        ({"after": "x"}, []),
        ({"after": "99999999999"}, []),  # beyond any seq the events table can hold
        ({}, [("Last-Event-ID", "99999999999")]),
    ]
    for query, headers in requests:
        call = HttpCall(app, events_path(execution.id), query=query, headers=headers)
        assert await call.start() == 422, (query, headers)
        assert call.headers["content-type"].startswith("application/problem+json")
        problem = json.loads(await call.body())
        assert problem["status"] == 422
        assert problem["errors"][0]["loc"][0] == ("header" if headers else "query")


async def test_client_disconnect_releases_the_subscription(app: FastAPI) -> None:
    execution_id = await start_run(app, SLOW)
    bus = services_of(app).bus
    call = HttpCall(app, events_path(execution_id))
    assert await call.start() == 200
    await call.events(limit=1)
    assert bus.subscriber_count(execution_id) == 1

    call.disconnect()
    await call.finished()

    assert bus.subscriber_count(execution_id) == 0
    await cancel(app, execution_id)


async def test_pings_keep_a_quiet_stream_alive(make_app: AppFactory) -> None:
    app = await make_app(sse_ping_s=0.02)
    execution_id = await start_run(app, SLOW)
    call = HttpCall(app, events_path(execution_id))
    assert await call.start() == 200

    pings = 0
    while pings < 3:
        message = await call.next_message()
        assert message is not None
        if message.comments:
            assert message.event is None
            pings += 1

    call.disconnect()
    await call.finished()
    await cancel(app, execution_id)


def test_openapi_documents_the_stream() -> None:
    app = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:"))
    operation = app.openapi()["paths"]["/v1/executions/{execution_id}/events"]["get"]

    assert operation["summary"]
    responses = operation["responses"]
    assert "text/event-stream" in responses["200"]["content"]
    assert {"200", "204", "404", "422"} <= set(responses)
    names = {p["name"].lower() for p in operation["parameters"]}
    assert {"after", "last-event-id"} <= names
