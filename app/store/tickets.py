"""Stream tickets (Core): issued in one statement, redeemed (deleted) in one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.tables import stream_tickets


@dataclass(frozen=True, slots=True)
class TicketRow:
    digest: bytes
    execution_id: str
    key_id: str | None
    subject: str | None
    scopes: list[str]
    project: str | None
    expires_at: datetime


async def insert(conn: AsyncConnection, row: TicketRow, now: datetime) -> None:
    """Store ``row``, sweeping expired tickets first (there are few: each lives 60 s)."""
    await conn.execute(delete(stream_tickets).where(stream_tickets.c.expires_at <= now))
    await conn.execute(
        stream_tickets.insert().values(**{name: getattr(row, name) for name in TicketRow.__slots__})
    )


async def redeem(conn: AsyncConnection, digest: bytes) -> TicketRow | None:
    """Take the ticket (it works once, whoever asks first); None if there is none."""
    columns = [getattr(stream_tickets.c, name) for name in TicketRow.__slots__]
    found = (
        await conn.execute(
            delete(stream_tickets).where(stream_tickets.c.digest == digest).returning(*columns)
        )
    ).first()
    return None if found is None else TicketRow(*found)
