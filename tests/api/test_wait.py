"""GET /wait parks on the event bus: a waiter reads the run's row when it arrives, the run with
its nodes once a settling event comes, and nothing while it waits, however many wait."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.auth import context
from tests.api.helpers import create_workflow, linear, services_of, serving, start_run
from tests.e2e.live import start_uvicorn

WAITERS = 20


@asynccontextmanager
async def held_endpoint(entered: asyncio.Event, release: asyncio.Event) -> AsyncIterator[str]:
    """A local URL that answers once ``release`` is set (``entered`` says a call arrived)."""

    async def held(request: Request) -> JSONResponse:
        del request
        entered.set()
        await release.wait()
        return JSONResponse({"ok": True})

    server, serving_task, sock = await start_uvicorn(
        Starlette(routes=[Route("/held", held)]), lifespan="off"
    )
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/held"
    finally:
        release.set()
        server.should_exit = True
        await serving_task
        sock.close()


async def test_waiters_read_nothing_while_they_wait(pg_database_url: str) -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    async with held_endpoint(entered, release) as url, serving(pg_database_url) as client:
        blocked = linear(
            {"id": "start", "type": "start"},
            {"id": "fetch", "type": "http", "config": {"url": url}},
            name="blocked",
        )
        run_id = (await start_run(client, await create_workflow(client, blocked)))["id"]
        await entered.wait()  # the run is running, held in its http node
        services = services_of(client)
        statements: list[str] = []
        parked = asyncio.Event()  # every waiter subscribed, then read the run's row

        def executed(*args: Any) -> None:
            if context.current() is not None:  # a request's statement, not background work
                statements.append(args[2])
                if len(statements) == WAITERS:
                    parked.set()

        engine = services.engine.sync_engine
        event.listen(engine, "before_cursor_execute", executed)
        try:
            waiters = [
                asyncio.create_task(
                    client.get(f"/v1/executions/{run_id}/wait", params={"timeout_s": 30})
                )
                for _ in range(WAITERS)
            ]
            await parked.wait()
            for _ in range(200):  # they stay parked: nothing more is read
                await asyncio.sleep(0)
            assert services.bus.subscriber_count(run_id) == WAITERS
            assert len(statements) == WAITERS  # the run's row, once each
            assert all("node_runs" not in sql for sql in statements)
            release.set()
            answers = await asyncio.gather(*waiters)
        finally:
            event.remove(engine, "before_cursor_execute", executed)
        assert {a.json()["status"] for a in answers} == {"completed"}
        assert all(len(a.json()["nodes"]) == 2 for a in answers)
        # After the terminal event: the run with its nodes (one statement), once each.
        assert len(statements) == 2 * WAITERS
