"""API key rows (Core) on a connection the caller passes: the service owns the transaction."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import exists, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.tables import api_keys

NOTIFY_CHANNEL = "oxify_keys"  # app.events.notify.Channel.KEYS: revocations reach every replica


@dataclass(frozen=True, slots=True)
class KeyRow:
    id: str
    name: str
    digest: bytes
    scopes: list[str]
    project: str | None
    limits: dict[str, Any] | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    replaced_by: str | None


_COLUMNS = [getattr(api_keys.c, name) for name in KeyRow.__slots__]


def _row(row: Any) -> KeyRow:
    return KeyRow(*row)


async def insert(conn: AsyncConnection, row: KeyRow) -> None:
    await conn.execute(
        api_keys.insert().values(**{name: getattr(row, name) for name in KeyRow.__slots__})
    )


async def get(conn: AsyncConnection, key_id: str) -> KeyRow | None:
    found = (await conn.execute(select(*_COLUMNS).where(api_keys.c.id == key_id))).first()
    return None if found is None else _row(found)


async def listed(conn: AsyncConnection) -> list[KeyRow]:
    """Every key, newest first (a deployment holds tens of keys, not millions)."""
    rows = await conn.execute(
        select(*_COLUMNS).order_by(api_keys.c.created_at.desc(), api_keys.c.id.desc())
    )
    return [_row(row) for row in rows]


async def any_exist(conn: AsyncConnection) -> bool:
    return bool(await conn.scalar(select(exists().where(api_keys.c.id.is_not(None)))))


async def revoke(conn: AsyncConnection, key_id: str, now: datetime) -> KeyRow | None:
    """Mark the key revoked (a second revocation keeps the first time); None if no such key."""
    await conn.execute(
        update(api_keys)
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return await get(conn, key_id)


async def expire(conn: AsyncConnection, key_id: str, at: datetime, replaced_by: str) -> None:
    """A rotated key: valid until ``at`` (the grace period), pointing at its successor."""
    await conn.execute(
        update(api_keys)
        .where(api_keys.c.id == key_id)
        .values(expires_at=at, replaced_by=replaced_by)
    )


async def touch(conn: AsyncConnection, key_ids: Iterable[str], now: datetime) -> None:
    """``last_used_at`` for keys used since the last write (one statement for all of them)."""
    ids = sorted(key_ids)
    if ids:
        await conn.execute(update(api_keys).where(api_keys.c.id.in_(ids)).values(last_used_at=now))


async def notify_changed(conn: AsyncConnection, sender: str, key_id: str) -> None:
    """Tell every replica the key was created, revoked or rotated (delivered when the
    transaction commits; Postgres only): they read it again on its next use. The payload is the
    notifier's ``sender|ids``."""
    if conn.dialect.name == "postgresql":
        await conn.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {"channel": NOTIFY_CHANNEL, "payload": f"{sender}|{key_id}"},
        )
