"""A run's events as they happen: Server-Sent Events and a WebSocket.

Both replay the stored events after the client's position, then follow the run live, and end
after its terminal event. A client that goes away stops its subscription at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Annotated, Any, Generic, TypeVar, cast

from fastapi import APIRouter, Header, Query, Request, Response, WebSocket
from prometheus_client import Gauge
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.websockets import WebSocketDisconnect, WebSocketState

from app.api import errors as api_errors
from app.api import guard, metrics, openapi
from app.api.deps import ServicesDep
from app.api.guard import GuardedRoute
from app.api.routes.params import MAX_SEQ, ExecutionId
from app.auth.scopes import Action
from app.domain import views
from app.domain.events import Event, EventType
from app.errors import ExecutionNotFound
from app.services.container import Services

router = APIRouter(tags=["events"], route_class=GuardedRoute)

RETRY_MS = 2000  # milliseconds a browser's EventSource waits before it reconnects
WS_NOT_FOUND = 4404  # WebSocket close codes: 4000 + the HTTP status they stand for
WS_INVALID = 4422

_SSE_DOC = (
    "One SSE message per event: `id` = seq, `event` = type, `data` = the event as JSON "
    "(an `EventOut`). The stream opens with a `retry` hint; comment lines (`: ping`) keep the "
    "connection alive; the stream ends after the run's terminal event."
)
# Each message as a client's parser sees it (FastAPI's and OpenAPI 3.2's shape of an event).
_SSE_MESSAGE = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": [t.value for t in EventType]},
        "id": {"type": "string", "pattern": "^[1-9][0-9]*$"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": openapi.SCHEMAS_REF + views.EventOut.__name__},
        },
        "retry": {"type": "integer", "minimum": 0},
    },
}
_EVENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": _SSE_DOC,
        "content": {"text/event-stream": {"itemSchema": _SSE_MESSAGE}},
    },
    204: {"description": "The run ended at or before the requested position: nothing to send."},
    **api_errors.problems(404, 422),
}


@router.get(
    "/v1/executions/{execution_id}/events",
    summary="Follow a run's events (Server-Sent Events)",
    description="Replays the events after `Last-Event-ID` (or, without it, `?after=`), then "
    "follows the run live until its terminal event.",
    response_class=EventSourceResponse,
    responses=_EVENT_RESPONSES,
    openapi_extra=guard.needs(Action.READ_RUNS, tickets=True),
)
async def stream_events(
    execution_id: ExecutionId,
    services: ServicesDep,
    request: Request,
    after: Annotated[
        int, Query(ge=0, le=MAX_SEQ, description="Send the events after this seq.")
    ] = 0,
    last_event_id: Annotated[
        int | None,
        Header(ge=0, le=MAX_SEQ, description="Set by EventSource on reconnect; wins over `after`."),
    ] = None,
) -> Response:
    position = after if last_event_id is None else last_event_id
    batches = await services.executions.stream(execution_id, position)
    if batches is None:
        return Response(status_code=204)
    return EventSourceResponse(
        sse_messages(batches, metrics.of(request.app).streams.labels("sse")),
        ping=services.settings.sse_ping_s,
        sep="\n",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def sse_messages(
    batches: AsyncIterator[list[Event]], followers: Gauge
) -> AsyncIterator[ServerSentEvent | bytes]:
    """A reconnect hint, then one SSE message per event, sent one chunk per stored batch (one
    write however many events a step made); closes ``batches`` when stopped. ``followers``
    counts it while it runs."""
    with followers.track_inprogress():
        async with contextlib.aclosing(cast(Any, batches)):
            yield ServerSentEvent(retry=RETRY_MS, sep="\n")
            async for batch in batches:
                yield b"".join(map(_frame, batch))


@router.websocket("/v1/executions/{execution_id}/ws", name="stream_events_ws")
@guard.websocket_route(Action.READ_RUNS)
async def stream_events_ws(websocket: WebSocket, execution_id: str) -> None:
    await websocket.accept()
    services: Services = websocket.app.state.services  # the guard found them
    after = _position(websocket.query_params.get("after", "0"))
    if "\x00" in execution_id:
        await websocket.close(WS_INVALID, "the execution id holds U+0000")
        return
    if after is None:
        await websocket.close(WS_INVALID, f"after must be an integer from 0 to {MAX_SEQ}")
        return
    try:
        batches = await services.executions.stream(execution_id, after)
    except ExecutionNotFound:
        await websocket.close(WS_NOT_FOUND, "no such execution")
        return
    if batches is None:
        await websocket.close(1000)
        return
    sender = asyncio.create_task(_send_all(websocket, batches))
    watcher = asyncio.create_task(_until_disconnect(websocket))
    try:
        with metrics.of(websocket.app).streams.labels("websocket").track_inprogress():
            await asyncio.wait((sender, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, watcher):
            task.cancel()
        await asyncio.gather(sender, watcher, return_exceptions=True)
    if watcher.done() and not watcher.cancelled():
        return  # the client went away: nothing more to say
    error = None if sender.cancelled() else sender.exception()
    if isinstance(error, WebSocketDisconnect | OSError):
        return
    if error is not None:
        raise error  # the server closes with 1011 and logs it
    await websocket.close(1000)


async def _send_all(websocket: WebSocket, batches: AsyncIterator[list[Event]]) -> None:
    async with contextlib.aclosing(cast(Any, batches)):
        async for batch in batches:
            for event in batch:
                await websocket.send_text(_json(event))


async def _until_disconnect(websocket: WebSocket) -> None:
    """Return once the client has gone (clients have nothing to say on this socket)."""
    while websocket.client_state is not WebSocketState.DISCONNECTED:
        try:
            message = await websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return
        if message["type"] == "websocket.disconnect":
            return


def _position(text: str) -> int | None:
    if not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if value <= MAX_SEQ else None


_Wire = TypeVar("_Wire", str, bytes)


class _Recent(Generic[_Wire]):
    """Encoded events by (run, seq), the oldest dropped once they hold more than ``max_bytes``;
    one bigger than that on its own is not kept at all."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._size = 0  # bytes held (JSON is ASCII only: a character is a byte)
        self._values: OrderedDict[tuple[str, int], _Wire] = OrderedDict()

    def get(self, key: tuple[str, int]) -> _Wire | None:
        return self._values.get(key)

    def put(self, key: tuple[str, int], value: _Wire) -> None:
        if len(value) > self.max_bytes or key in self._values:
            return
        self._values[key] = value
        self._size += len(value)
        while self._size > self.max_bytes:
            _key, dropped = self._values.popitem(last=False)
            self._size -= len(dropped)


class _Encoded:
    """A run's recent events in wire form, encoded once however many subscribers send them
    (1,000 dashboards on one run cost one encoding per event, not 1,000). Bounded by size, not
    count: a few huge events (node outputs) must not pin hundreds of megabytes."""

    MAX_BYTES = 8 * 1024 * 1024  # bytes of JSON text (WebSocket) and of SSE frames, each

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self._json: _Recent[str] = _Recent(max_bytes)
        self._frames: _Recent[bytes] = _Recent(max_bytes)

    def json(self, event: Event) -> str:
        key = (event.execution_id, event.seq)
        text = self._json.get(key)
        if text is None:
            text = _encode(event)
            self._json.put(key, text)
        return text

    def frame(self, event: Event) -> bytes:
        key = (event.execution_id, event.seq)
        frame = self._frames.get(key)
        if frame is None:
            # The JSON is not kept for a frame: SSE subscribers need only the frame.
            text = self._json.get(key) or _encode(event)
            message = ServerSentEvent(text, event=event.type.value, id=str(event.seq), sep="\n")
            frame = message.encode()
            self._frames.put(key, frame)
        return frame


def _encode(event: Event) -> str:
    # ASCII only: no U+2028 or U+0085 for a client that splits lines too eagerly.
    return json.dumps(event.to_dict(), separators=(",", ":"), default=str)


_encoded = _Encoded()
_json = _encoded.json
_frame = _encoded.frame
