"""API keys: create, list, revoke and rotate (the admin API and ``oxify keys``), and checking
a presented key against the replica's cache.

Revoking or rotating a key notifies every replica in the same transaction (Postgres delivers
it at commit), so a revoked key is refused everywhere within the notifier's latency; each
replica also re-reads a key at least every ``key_cache_s`` (5 s), the backstop.
``last_used_at`` is written for all keys used meanwhile in one statement a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.auth import keys as key_format
from app.auth import scopes as scope_table
from app.auth.principal import DEFAULT_PROJECT, Principal
from app.auth.scopes import Scope
from app.domain.access import ApiKey, CreatedApiKey
from app.domain.limits import Limits
from app.errors import (
    InsufficientScope,
    KeyNotFound,
    KeyPepperMissing,
    KeySpecInvalid,
    Unauthenticated,
)
from app.services import audit
from app.services.audit import AuditAction
from app.services.key_cache import KeyCache
from app.store import keys as key_rows
from app.store.keys import KeyRow

log = logging.getLogger(__name__)

TOUCH_INTERVAL_S = 60.0  # seconds: last_used_at is at most this stale, one write per interval


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def _audit(
    conn: AsyncConnection, action: AuditAction, row: KeyRow, detail: dict[str, Any] | None = None
) -> None:
    """The key change's audit row, in its transaction (the key id, never the key)."""
    await audit.record(
        conn,
        action=action,
        target=f"key:{row.id}",
        project=row.project or DEFAULT_PROJECT,
        detail=detail,
    )


def view(row: KeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        scopes=row.scopes,
        project=row.project,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
        replaced_by=row.replaced_by,
        limits=_limits(row.limits),
    )


def _limits(stored: dict[str, Any] | None) -> Limits | None:
    return None if not stored else Limits.model_validate(stored)


class KeyService:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        pepper: bytes | None,
        sender: str,
        cache_s: float,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._engine = engine
        self._pepper = pepper
        self._sender = sender  # the notifier's sender name: this replica ignores its own
        self._now = now
        self.cache = KeyCache(self._read, ttl_s=cache_s)
        self._used: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[list[str]], None]] = []

    def on_change(self, listener: Callable[[list[str]], None]) -> None:
        """Call ``listener`` with the ids of keys this replica created, revoked or rotated."""
        self._listeners.append(listener)

    def _changed(self, key_ids: list[str]) -> None:
        self.cache.forget(key_ids)
        for listener in self._listeners:
            listener(key_ids)

    # -- management -----------------------------------------------------------------------

    async def create(
        self,
        *,
        name: str,
        scopes: list[str],
        project: str | None,
        expires_in_days: int | None = None,
        limits: Limits | None = None,
        by: Principal | None = None,
    ) -> CreatedApiKey:
        """A new key; its text is in the answer and nowhere else. ``project`` None: every
        project (admin keys only). ``by``: the admin creating it, who can only hand out a
        project it sees itself."""
        granted = self._scopes(scopes)
        if project is None and Scope.ADMIN not in granted:
            raise KeySpecInvalid("only an admin key may see every project; name a project")
        if by is not None and not by.sees(project or ""):
            raise InsufficientScope("an admin of one project creates keys for that project only")
        now = self._now()
        text, parsed = key_format.new_key()
        row = KeyRow(
            id=parsed.key_id,
            name=name,
            digest=key_format.digest(parsed.secret, self._required_pepper()),
            scopes=sorted(granted),
            project=project,
            limits=None if limits is None else limits.model_dump(exclude_none=True),
            created_at=now,
            expires_at=None if expires_in_days is None else now + timedelta(days=expires_in_days),
            revoked_at=None,
            last_used_at=None,
            replaced_by=None,
        )
        async with self._engine.begin() as conn:
            await key_rows.insert(conn, row)
            await key_rows.notify_changed(conn, self._sender, row.id)
            await _audit(conn, AuditAction.KEY_CREATE, row, {"scopes": row.scopes})
        self._changed([row.id])
        return CreatedApiKey(**view(row).model_dump(), key=text)

    async def import_key(self, text: str, *, name: str) -> bool:
        """Make ``text`` (a well-formed key, from a secret file) an admin key of every
        project; False if a key with its id exists already (then it is left as it is)."""
        parsed = key_format.parse(text)
        if parsed is None:
            raise KeySpecInvalid("not a well-formed Oxify API key")
        now = self._now()
        row = KeyRow(
            id=parsed.key_id,
            name=name,
            digest=key_format.digest(parsed.secret, self._required_pepper()),
            scopes=[Scope.ADMIN.value],
            project=None,
            limits=None,
            created_at=now,
            expires_at=None,
            revoked_at=None,
            last_used_at=None,
            replaced_by=None,
        )
        async with self._engine.begin() as conn:
            if await key_rows.get(conn, row.id) is not None:
                return False
            await key_rows.insert(conn, row)
            await key_rows.notify_changed(conn, self._sender, row.id)
            await _audit(conn, AuditAction.KEY_CREATE, row, {"scopes": row.scopes, "from": "file"})
        self._changed([row.id])
        return True

    async def listed(self, by: Principal | None = None) -> list[ApiKey]:
        async with self._engine.connect() as conn:
            rows = await key_rows.listed(conn)
        return [view(row) for row in rows if by is None or by.sees(row.project or "")]

    async def revoke(self, key_id: str, by: Principal | None = None) -> ApiKey:
        """Revoke now, on every replica. Revoking twice keeps the first time."""
        async with self._engine.begin() as conn:
            row = await self._visible(conn, key_id, by)
            row = await key_rows.revoke(conn, row.id, self._now()) or row
            await key_rows.notify_changed(conn, self._sender, row.id)
            await _audit(conn, AuditAction.KEY_REVOKE, row)
        self._changed([row.id])
        return view(row)

    async def rotate(
        self, key_id: str, *, grace_s: int, by: Principal | None = None
    ) -> CreatedApiKey:
        """A new key with the old one's name, scopes and project; the old one keeps working
        ``grace_s`` seconds more (never longer than it would have), then is refused."""
        now = self._now()
        async with self._engine.begin() as conn:
            old = await self._visible(conn, key_id, by)
            if old.revoked_at is not None:
                raise KeySpecInvalid("a revoked key cannot be rotated; create a new one")
            text, parsed = key_format.new_key()
            row = KeyRow(
                id=parsed.key_id,
                name=old.name,
                digest=key_format.digest(parsed.secret, self._required_pepper()),
                scopes=old.scopes,
                project=old.project,
                limits=old.limits,
                created_at=now,
                expires_at=None
                if old.expires_at is None
                else now + (old.expires_at - old.created_at),
                revoked_at=None,
                last_used_at=None,
                replaced_by=None,
            )
            await key_rows.insert(conn, row)
            until = now + timedelta(seconds=grace_s)
            if old.expires_at is not None:
                until = min(until, old.expires_at)
            await key_rows.expire(conn, old.id, until, row.id)
            await key_rows.notify_changed(conn, self._sender, old.id)
            await _audit(conn, AuditAction.KEY_ROTATE, old, {"replaced_by": row.id})
        self._changed([old.id, row.id])
        return CreatedApiKey(**view(row).model_dump(), key=text)

    async def any_exist(self) -> bool:
        async with self._engine.connect() as conn:
            return await key_rows.any_exist(conn)

    async def _visible(self, conn: AsyncConnection, key_id: str, by: Principal | None) -> KeyRow:
        row = await key_rows.get(conn, key_id)
        if row is None or (by is not None and not by.sees(row.project or "")):
            raise KeyNotFound()
        return row

    def _scopes(self, names: list[str]) -> frozenset[Scope]:
        try:
            return scope_table.parse(names)
        except ValueError as exc:
            raise KeySpecInvalid(str(exc)) from None

    def _required_pepper(self) -> bytes:
        if self._pepper is None:
            raise KeyPepperMissing()
        return self._pepper

    # -- checking -----------------------------------------------------------------------

    async def principal(self, text: str) -> Principal:
        """The caller a presented key stands for; Unauthenticated for anything else. A
        malformed key (or a bad checksum) is refused without a database read."""
        parsed = key_format.parse(text)
        if parsed is None:
            raise Unauthenticated("not a well-formed Oxify API key")
        if self._pepper is None:
            log.error("an API key was presented but OXIFY_KEY_PEPPER is not set here")
            raise Unauthenticated("this replica cannot check API keys (no OXIFY_KEY_PEPPER)")
        row = await self.cache.get(parsed.key_id)
        if row is None or not key_format.matches(parsed.secret, row.digest, self._pepper):
            raise Unauthenticated("unknown API key")
        # The caller holds the secret: it may learn why its key no longer works.
        if row.revoked_at is not None:
            raise Unauthenticated(f"API key {row.id} was revoked")
        if row.expires_at is not None and row.expires_at <= self._now():
            raise Unauthenticated(f"API key {row.id} expired")
        self._used.add(row.id)
        return Principal(
            scopes=frozenset(Scope(s) for s in row.scopes),
            project=row.project,
            key_id=row.id,
            name=row.name,
            limits=_limits(row.limits),
        )

    async def _read(self, key_id: str) -> KeyRow | None:
        async with self._engine.connect() as conn:
            return await key_rows.get(conn, key_id)

    # -- last_used_at -------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._touch_forever(), name="oxify-key-usage")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.touch()

    async def touch(self) -> None:
        """Write ``last_used_at`` for the keys used since the last write."""
        used, self._used = self._used, set()
        if not used:
            return
        try:
            async with self._engine.begin() as conn:
                await key_rows.touch(conn, used, self._now())
        except Exception as exc:  # a lost last-used time is not worth failing anything for
            log.warning("cannot record when %d API keys were last used: %s", len(used), exc)

    async def _touch_forever(self) -> None:
        while True:
            await asyncio.sleep(TOUCH_INTERVAL_S)
            await self.touch()
