"""OXIFY_DATABASE_URL as people write it: the async driver is filled in, anything else is refused
with how to write it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.settings import Settings, async_database_url
from app.store import db


@pytest.mark.parametrize(
    ("written", "used"),
    [
        (
            "postgres://u:pw@db.example:5433/oxify",
            "postgresql+asyncpg://u:pw@db.example:5433/oxify",
        ),
        ("postgresql://postgres@127.0.0.1/test", "postgresql+asyncpg://postgres@127.0.0.1/test"),
        ("postgresql+asyncpg://postgres@h/test", "postgresql+asyncpg://postgres@h/test"),
        ("postgres://u@h/d?sslmode=require", "postgresql+asyncpg://u@h/d?ssl=require"),
        ("postgres://u:p%40ss@h/d", "postgresql+asyncpg://u:p%40ss@h/d"),
        ("sqlite:///oxify.db", "sqlite+aiosqlite:///oxify.db"),
        ("sqlite:////var/lib/oxify/oxify.db", "sqlite+aiosqlite:////var/lib/oxify/oxify.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_the_async_driver_is_filled_in(written: str, used: str) -> None:
    assert async_database_url(written) == used
    assert Settings(database_url=written).resolved_database_url == used


@pytest.mark.parametrize(
    ("written", "complaint"),
    [
        ("mysql://u@h/d", "unsupported database 'mysql': Oxify runs on Postgres or SQLite"),
        ("postgresql+psycopg://u@h/d", "unsupported driver 'psycopg'"),
        ("sqlite+pysqlite:///x.db", "unsupported driver 'pysqlite'"),
        ("localhost:5432/oxify", "not a database URL"),
    ],
)
def test_other_urls_say_how_to_write_one(written: str, complaint: str) -> None:
    with pytest.raises(ValueError, match="; write ") as raised:
        async_database_url(written)
    assert complaint in str(raised.value)
    with pytest.raises(ValidationError, match="database_url"):
        Settings(database_url=written)


def test_asyncpg_connections_get_libpq_sslmode_back() -> None:
    """The engine passes `ssl` to asyncpg.connect; a DSN for asyncpg itself says `sslmode`."""
    engine = db.create_engine(async_database_url("postgres://u:pw@h:5433/d?sslmode=require"))
    assert db.asyncpg_dsn(engine) == "postgresql://u:pw@h:5433/d?sslmode=require"


def test_percent_encoded_passwords_reach_alembic_intact() -> None:
    url = async_database_url("postgres://u:p%40ss@h/d")
    assert db.alembic_config(url).get_main_option("sqlalchemy.url") == url
