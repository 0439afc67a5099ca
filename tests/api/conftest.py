"""The real app over ASGI, its lifespan running, on a real Postgres database per module."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.api.helpers import serving


@pytest.fixture
async def client(pg_database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(pg_database_url, shutdown_grace_s=2.0) as client:
        yield client
