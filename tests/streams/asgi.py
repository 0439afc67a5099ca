"""Drive the app's ASGI callable by hand: fake ``receive``/``send``, no network, no buffering.

httpx's ASGI transport buffers whole bodies, so a stream that stays open would hang a test; here
each message the app sends lands in a queue the test reads as it goes, and the test decides when
the client goes away.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.types import ASGIApp, Message, Scope

TIMEOUT_S = 10.0  # seconds any single wait in these tests may take


@dataclass
class SseMessage:
    """One block of an event stream (the lines up to a blank line), parsed."""

    id: str | None = None
    event: str | None = None
    data: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def payload(self) -> dict[str, Any]:
        assert self.data is not None
        decoded: dict[str, Any] = json.loads(self.data)
        return decoded


def parse_sse(block: str) -> SseMessage:
    message = SseMessage()
    data: list[str] = []
    for line in re.split(r"\r\n|\r|\n", block):
        if not line:
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "":
            message.comments.append(value)
        elif name == "id":
            message.id = value
        elif name == "event":
            message.event = value
        elif name == "data":
            data.append(value)
        elif name == "retry":
            message.retry = int(value)
    message.data = "\n".join(data) if data else None
    return message


class _Peer:
    """The client's side of one ASGI connection."""

    def __init__(self, app: ASGIApp, scope: Scope, first: Message, gone: Message) -> None:
        self.sent: asyncio.Queue[Message] = asyncio.Queue()
        self._pending: list[Message] = [first]
        self._gone_message = gone
        self._gone = asyncio.Event()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.task: asyncio.Task[None] = asyncio.create_task(self._call(app, scope))

    async def _call(self, app: ASGIApp, scope: Scope) -> None:
        await app(scope, self._receive, self._send)

    async def _receive(self) -> Message:
        if self._pending:
            return self._pending.pop(0)
        await self._gone.wait()
        return self._gone_message

    async def _send(self, message: Message) -> None:
        await self._flowing.wait()
        self.sent.put_nowait(message)

    def hold(self) -> None:
        """Make the client slow: the app's sends block until :meth:`release`."""
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    async def next_sent(self) -> Message:
        async with asyncio.timeout(TIMEOUT_S):
            return await self.sent.get()

    def disconnect(self) -> None:
        self._gone.set()

    async def finished(self) -> None:
        """Wait for the app to return from this call."""
        async with asyncio.timeout(TIMEOUT_S):
            await self.task


def _scope(
    kind: str, path: str, query: dict[str, str], headers: Sequence[tuple[str, str]]
) -> Scope:
    scope: dict[str, Any] = {
        "type": kind,
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": "http" if kind == "http" else "ws",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": urlencode(query).encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    if kind == "http":
        scope["method"] = "GET"
    else:
        scope["subprotocols"] = []
    return scope


class HttpCall(_Peer):
    """A GET request whose response is read message by message."""

    def __init__(
        self,
        app: ASGIApp,
        path: str,
        *,
        query: dict[str, str] | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(
            app,
            _scope("http", path, query or {}, headers),
            {"type": "http.request", "body": b"", "more_body": False},
            {"type": "http.disconnect"},
        )
        self.status = 0
        self.headers: dict[str, str] = {}
        self.ended = False
        self._buffer = ""

    async def start(self) -> int:
        """Read the response head; returns its status."""
        message = await self.next_sent()
        assert message["type"] == "http.response.start", message
        self.status = message["status"]
        self.headers = {k.decode(): v.decode() for k, v in message.get("headers", [])}
        return self.status

    async def body(self) -> bytes:
        """The rest of a (finite) body."""
        chunks = []
        while not self.ended:
            chunks.append(await self._chunk())
        return b"".join(chunks)

    async def _chunk(self) -> bytes:
        message = await self.next_sent()
        assert message["type"] == "http.response.body", message
        self.ended = not message.get("more_body", False)
        body: bytes = message.get("body", b"")
        return body

    async def next_message(self) -> SseMessage | None:
        """The next SSE block (a chunk may hold several; blocks end at a blank line); None at
        the end."""
        while True:
            block, blank, rest = self._buffer.partition("\n\n")
            if blank:
                self._buffer = rest
                return parse_sse(block)
            if self.ended:
                return None
            self._buffer += (await self._chunk()).decode()

    async def events(self, limit: int | None = None) -> list[SseMessage]:
        """Event messages (not comments or hints) until the end, or ``limit`` of them."""
        found: list[SseMessage] = []
        while limit is None or len(found) < limit:
            message = await self.next_message()
            if message is None:
                break
            if message.event is not None:
                found.append(message)
        return found


class WsCall(_Peer):
    """A WebSocket session: the frames the app sends, and its close."""

    def __init__(
        self,
        app: ASGIApp,
        path: str,
        *,
        query: dict[str, str] | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(
            app,
            _scope("websocket", path, query or {}, headers),
            {"type": "websocket.connect"},
            {"type": "websocket.disconnect", "code": 1000},
        )
        self.close_code: int | None = None
        self.close_reason = ""

    async def accepted(self) -> None:
        message = await self.next_sent()
        assert message["type"] == "websocket.accept", message

    async def frame(self) -> dict[str, Any] | None:
        """The next text frame as JSON; None once the app closed the socket."""
        message = await self.next_sent()
        if message["type"] == "websocket.close":
            self.close_code = message.get("code", 1000)
            self.close_reason = message.get("reason") or ""
            return None
        assert message["type"] == "websocket.send", message
        decoded: dict[str, Any] = json.loads(message["text"])
        return decoded

    async def frames(self, limit: int | None = None) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while limit is None or len(found) < limit:
            frame = await self.frame()
            if frame is None:
                break
            found.append(frame)
        return found
