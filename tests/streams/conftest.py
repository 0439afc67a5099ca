"""An app with its services running on a fresh Postgres database."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI

from app.main import create_app
from app.settings import Settings
from tests.streams.runs import AppFactory


@pytest.fixture
async def make_app(fresh_pg_url: str) -> AsyncIterator[AppFactory]:
    """Build and start apps on one fresh database; each is shut down after the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(**settings: Any) -> FastAPI:
            settings.setdefault("sse_ping_s", 60.0)
            settings.setdefault("shutdown_grace_s", 5.0)
            app = create_app(Settings(database_url=fresh_pg_url, **settings))
            await stack.enter_async_context(app.router.lifespan_context(app))
            return app

        yield make


@pytest.fixture
async def app(make_app: AppFactory) -> FastAPI:
    return await make_app()
