"""A database that cannot be reached is DatabaseUnavailable (the API answers 503), not a driver
error; the pool reconnects once it is back (see tests/api/test_operations.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from app.errors import DatabaseUnavailable
from app.store.db import create_engine


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port held by no listener: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def test_a_refused_connection_is_database_unavailable(closed_port: int) -> None:
    engine = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port}/oxify")
    try:
        with pytest.raises(DatabaseUnavailable) as caught:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
    assert isinstance(caught.value.__cause__, OSError)
    assert caught.value.retry_after_s >= 1


async def test_a_statement_that_fails_is_not_database_unavailable(pg_database_url: str) -> None:
    engine = create_engine(pg_database_url)
    try:
        async with engine.connect() as conn:
            with pytest.raises(Exception) as caught:
                await conn.execute(text("SELECT * FROM no_such_table"))
    finally:
        await engine.dispose()
    assert not isinstance(caught.value, DatabaseUnavailable)
