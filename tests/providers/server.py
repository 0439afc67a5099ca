"""The shared core of the provider servers: lifecycle, recording, scripting, pacing, disconnects.

A :class:`ProviderServer` is a Starlette app on a free 127.0.0.1 port whose routes come from a
protocol module (``openai_wire``, ``anthropic_wire``, ``ollama_wire``). It runs in the caller's
event loop (``async with``) or in a thread with its own loop (``with`` / ``start_in_thread``),
records every request, and answers from a FIFO of scripted replies, falling back to
``default``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from tests.e2e.live import start_uvicorn
from tests.providers import replies
from tests.providers.replies import Answer, EmbedReply, Failure, Reply
from tests.providers.tally import Tally

STOP_S = 10.0  # seconds starting or stopping a server may take
DIMENSIONS = 64  # embedding size when a request names none
STOPPING = Failure(503, "the server is stopping")


@dataclass(frozen=True)
class Recorded:
    """One request as it arrived (header names lower-cased)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


async def _disconnected(receive: Receive) -> None:
    """Return when the client goes away (the request body has been read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _first(*awaitables: Any) -> int:
    """Run the awaitables until one finishes; cancel the rest; the index of the finisher."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return next(i for i, task in enumerate(tasks) if task in done)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)


class EventStream(StreamingResponse):
    """A streamed body that notices the client leaving: it stops producing frames at once and
    calls ``on_disconnect`` (Starlette's own streaming response does not say it happened)."""

    def __init__(
        self,
        frames: AsyncGenerator[bytes, None],
        media_type: str,
        on_disconnect: Callable[[], None],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(frames, media_type=media_type, headers=headers)
        self._frames = frames
        self._on_disconnect = on_disconnect

    async def _send_frames(self, send: Send) -> None:
        async with contextlib.aclosing(self._frames):
            async for frame in self._frames:
                await send({"type": "http.response.body", "body": frame, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        if await _first(self._send_frames(send), _disconnected(receive)) == 1:
            self._on_disconnect()


class ProviderServer:
    """One provider API on loopback. ``url`` is what an SDK takes as its base URL (it includes
    the protocol's path prefix, ``/v1`` for OpenAI); ``base`` is scheme, host and port only."""

    def __init__(
        self,
        routes: Callable[[ProviderServer], list[BaseRoute]],
        *,
        prefix: str = "",
        default: Reply | None = None,
        dimensions: int = DIMENSIONS,
    ) -> None:
        self._initial_default: Reply = default or replies.Echo()
        self.dimensions = dimensions
        self.port = 0
        self._prefix = prefix
        self._app = Starlette(routes=routes(self))
        self._closing: asyncio.Event | None = None
        self._serving: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._stop_requested: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_error: BaseException | None = None
        self.reset()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}{self._prefix}"

    # -- scripting and recording ------------------------------------------------------------

    def script(self, *items: Reply) -> None:
        """Queue replies for the next chat requests, in order (then ``default`` again)."""
        self._chat.extend(items)

    def script_embeddings(self, *items: EmbedReply) -> None:
        """Queue replies for the next embedding requests (``Echo`` is the normal answer)."""
        self._embed.extend(items)

    def reset(self) -> None:
        """Forget scripts, recordings and a changed ``default``: a server shared by several
        tests starts each one clean."""
        self.default = self._initial_default
        self._chat: deque[Reply] = deque()
        self._embed: deque[EmbedReply] = deque()
        self.requests: list[Recorded] = []
        self.counts: Counter[str] = Counter()  # path → requests
        self.received = Tally()
        self.disconnects = Tally()  # streams or requests the client left before their end
        self.sent: list[float] = []  # time.time() as each streamed chunk went out (benchmarks)
        self.arrived: list[float] = []  # time.time() as each request arrived (benchmarks)

    async def record(self, request: Request) -> dict[str, Any]:
        """Record ``request`` and return its JSON body ({} when it is not an object)."""
        arrived = time.time()
        raw = await request.body()
        body = json.loads(raw) if raw else None
        path = request.url.path
        self.requests.append(Recorded(request.method, path, dict(request.headers), body))
        self.arrived.append(arrived)
        self.counts[path] += 1
        self.received.add()
        return body if isinstance(body, dict) else {}

    # -- answering ---------------------------------------------------------------------------

    async def chat_turn(
        self,
        request: Request,
        *,
        stream: bool,
        last_user: str,
        prompt_tokens: int,
        max_tokens: int | None,
    ) -> Answer | Failure:
        """The next reply as an answer to this chat, after its delay. A non-streaming hang is
        held here until the client leaves (or the server stops)."""
        reply = self._chat.popleft() if self._chat else self.default
        await self.pause(reply.delay_s)
        result = replies.answer(reply, last_user, prompt_tokens)
        if isinstance(result, Failure):
            return result
        if result.hang and not stream:
            await self.hold(request)
            return STOPPING
        return result.limited(max_tokens)

    async def embed_turn(self, request: Request) -> Failure | None:
        """None to answer normally, or the failure to answer with, after the reply's delay."""
        reply = self._embed.popleft() if self._embed else replies.Echo()
        await self.pause(reply.delay_s)
        if isinstance(reply, replies.Hang):
            await self.hold(request)
            return STOPPING
        return reply if isinstance(reply, Failure) else None

    async def paced(self, answer: Answer) -> AsyncIterator[str]:
        """The answer's chunks at its pace; a hang then waits (for the client to leave, which
        cancels the stream, or for the server to stop)."""
        for i, chunk in enumerate(answer.chunks):
            if i:
                await self.pause(answer.token_delay_s)
            self.sent.append(time.time())
            yield chunk
        if answer.hang:
            await self._closing_event().wait()

    def stream(
        self, frames: AsyncGenerator[bytes, None], media_type: str, headers: Mapping[str, str]
    ) -> EventStream:
        return EventStream(frames, media_type, self.disconnects.add, headers)

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds``, cut short when the server stops (so stopping never waits on it)."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._closing_event().wait()

    async def hold(self, request: Request) -> None:
        """Wait until the client disconnects (counted) or the server stops."""
        if await _first(_disconnected(request.receive), self._closing_event().wait()) == 0:
            self.disconnects.add()

    def _closing_event(self) -> asyncio.Event:
        assert self._closing is not None, "the server is not started"
        return self._closing

    # -- lifecycle in the caller's loop ------------------------------------------------------

    async def start(self) -> ProviderServer:
        self._closing = asyncio.Event()
        server, self._serving, sock = await start_uvicorn(self._app, lifespan="off")
        self._uvicorn, self._sock = server, sock
        self.port = sock.getsockname()[1]
        return self

    async def aclose(self) -> None:
        """Stop: scripted pauses and hangs end, then uvicorn drains its connections."""
        assert self._serving is not None, "the server is not started"
        self._closing_event().set()
        self._uvicorn.should_exit = True
        async with asyncio.timeout(STOP_S):
            await self._serving
        self._sock.close()

    async def __aenter__(self) -> ProviderServer:
        return await self.start()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- lifecycle in a thread of its own ----------------------------------------------------

    def start_in_thread(self) -> ProviderServer:
        """Serve from a daemon thread running its own event loop; returns once it listens."""
        started = threading.Event()
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._serve_in_thread(started),), daemon=True
        )
        self._thread.start()
        if not started.wait(STOP_S):
            raise TimeoutError("the provider server did not start")
        if self._thread_error is not None:
            raise self._thread_error
        return self

    async def _serve_in_thread(self, started: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        try:
            await self.start()
        except BaseException as exc:
            self._thread_error = exc
            raise
        finally:
            started.set()
        await self._stop_requested.wait()
        await self.aclose()

    def stop(self) -> None:
        """Stop a server started with :meth:`start_in_thread`, from any other thread."""
        assert self._loop is not None and self._stop_requested is not None and self._thread
        self._loop.call_soon_threadsafe(self._stop_requested.set)
        self._thread.join(STOP_S)
        assert not self._thread.is_alive(), "the provider server did not stop"

    def __enter__(self) -> ProviderServer:
        return self.start_in_thread()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def failure_response(
    failure: Failure, body: Any, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """``failure`` as a response: its own ``body`` if it has one, else the protocol's ``body``."""
    content = failure.body if failure.body is not None else body
    return JSONResponse(content, failure.status, headers={**(headers or {}), **failure.headers})
