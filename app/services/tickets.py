"""Stream tickets: EventSource and browser WebSockets cannot send an ``Authorization`` header,
so a client with credentials trades them for a ticket (``POST /v1/auth/tickets``) that opens
one run's event stream once, within ``TICKET_TTL_S``. Only the ticket's SHA-256 is stored;
redeeming deletes it in the same statement, so it works once across every replica. A ticket
made from a key dies with the key: the key is checked again when the ticket is used.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.principal import Principal
from app.auth.scopes import Scope
from app.errors import Unauthenticated
from app.services.keys import KeyService
from app.store import tickets as ticket_rows
from app.store.tickets import TicketRow

TICKET_TTL_S = 60  # seconds a ticket may wait before it is used
PREFIX = "oxt_"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _digest(ticket: str) -> bytes:
    return hashlib.sha256(ticket.encode()).digest()


class TicketService:
    def __init__(
        self, engine: AsyncEngine, keys: KeyService, now: Callable[[], datetime] = _utcnow
    ) -> None:
        self._engine = engine
        self._keys = keys
        self._now = now

    async def issue(self, principal: Principal, execution_id: str) -> tuple[str, datetime]:
        """A ticket for ``principal`` to follow ``execution_id`` (the caller checked that it
        may read that run) and when it expires."""
        ticket = PREFIX + secrets.token_urlsafe(32)
        now = self._now()
        expires_at = now + timedelta(seconds=TICKET_TTL_S)
        row = TicketRow(
            digest=_digest(ticket),
            execution_id=execution_id,
            key_id=principal.key_id,
            subject=principal.subject,
            scopes=sorted(principal.scopes),
            project=principal.project,
            expires_at=expires_at,
        )
        async with self._engine.begin() as conn:
            await ticket_rows.insert(conn, row, now)
        return ticket, expires_at

    async def redeem(self, ticket: str, execution_id: str) -> Principal:
        """The caller a ticket stands for, on the stream of ``execution_id``; it is used up
        whatever the outcome (a ticket tried on the wrong run is gone too)."""
        if not ticket.startswith(PREFIX) or len(ticket) > 100:
            raise Unauthenticated("not a stream ticket")
        async with self._engine.begin() as conn:
            row = await ticket_rows.redeem(conn, _digest(ticket))
        if row is None or row.expires_at <= self._now():
            raise Unauthenticated("the stream ticket is unknown, used or expired")
        if row.execution_id != execution_id:
            raise Unauthenticated("the stream ticket is for another execution")
        if row.key_id is not None:
            key = await self._keys.cache.get(row.key_id)
            if key is None or key.revoked_at is not None:
                raise Unauthenticated(f"API key {row.key_id} was revoked")
        return Principal(
            scopes=frozenset(Scope(s) for s in row.scopes),
            project=row.project,
            key_id=row.key_id,
            subject=row.subject,
        )
