"""Audit rows (Core) on a connection the caller passes: the row is written in the caller's
transaction, so an action and its audit row commit or roll back together.

The chain stays linear because every append updates the one ``audit_head`` row: appenders
queue on its row lock, held until their transaction ends. The append should therefore be the
caller's last statement before commit. On Postgres it is ONE statement (the head's update and
the row's insert, the hash computed by the database); SQLite has a single writer, and the
hash is computed here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy import Row, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.auth import audit as chain
from app.auth.audit import AuditEntry, ChainedRow, Filters
from app.domain import views as models
from app.errors import CursorInvalid
from app.store import codec
from app.store.tables import audit_head, audit_log
from app.store.workflows import decode_cursor, encode_cursor

VERIFY_BATCH = 1000  # rows read per round trip by ``rows``
_FIELDS = ("at", "actor", "action", "target", "project", "outcome", "request_id", "client_ip")
PG_PARAMETERS = (*_FIELDS, "detail", "body")  # :func:`pg_arguments`' keys, in this order


def pg_statement(param: Callable[[str], str], *, guard: str = "TRUE") -> str:
    """CTEs (``audit_head_``, ``audit_row_``) that append one row on Postgres, to follow a
    ``WITH`` (or another CTE and a comma): the head's row is updated (locking it) and the row
    inserted under the id and hash it gives. ``param(name)`` spells a parameter (``:at``,
    ``$8``); names are :func:`pg_arguments`' keys. Nothing is written unless ``guard`` holds."""
    p = param
    return f"""audit_head_ AS (
    UPDATE audit_head SET
        last_id = last_id + 1,
        prev_hash = last_hash,
        last_hash = sha256(last_hash || int8send(last_id + 1) || CAST({p("body")} AS bytea))
    WHERE id = 1 AND {guard}
    RETURNING last_id, prev_hash, last_hash
), audit_row_ AS (
    INSERT INTO audit_log (id, at, actor, action, target, project, outcome, request_id,
                           client_ip, detail, prev_hash, hash)
    SELECT last_id, CAST({p("at")} AS timestamptz),
           CAST({p("actor")} AS text), CAST({p("action")} AS text),
           CAST({p("target")} AS text), CAST({p("project")} AS text),
           CAST({p("outcome")} AS text), CAST({p("request_id")} AS text),
           CAST({p("client_ip")} AS text), CAST({p("detail")} AS json),
           prev_hash, last_hash
    FROM audit_head_
    RETURNING id
)"""


def pg_arguments(entry: AuditEntry) -> dict[str, Any]:
    """The parameters of :func:`pg_statement` for ``entry``, by name."""
    values: dict[str, Any] = {name: getattr(entry, name) for name in _FIELDS}
    values["detail"] = None if entry.detail is None else codec.dumps(entry.detail)
    values["body"] = chain.canonical(entry)
    return values


_PG_APPEND = text(f"WITH {pg_statement(lambda name: ':' + name)} SELECT id FROM audit_row_")


async def append(conn: AsyncConnection, entry: AuditEntry) -> int:
    """Append ``entry`` in the connection's transaction; its id."""
    if conn.dialect.name == "postgresql":
        return int((await conn.execute(_PG_APPEND, pg_arguments(entry))).scalar_one())
    head = (
        await conn.execute(
            update(audit_head)
            .where(audit_head.c.id == 1)
            .values(last_id=audit_head.c.last_id + 1)
            .returning(audit_head.c.last_id, audit_head.c.last_hash)
        )
    ).one()
    row_id, prev = int(head.last_id), bytes(head.last_hash)
    digest = chain.chain_hash(prev, row_id, entry)
    await conn.execute(
        update(audit_head).where(audit_head.c.id == 1).values(last_hash=digest, prev_hash=prev)
    )
    values = {name: getattr(entry, name) for name in _FIELDS}
    await conn.execute(
        audit_log.insert().values(
            id=row_id,
            detail=None if entry.detail is None else dict(entry.detail),
            prev_hash=prev,
            hash=digest,
            **values,
        )
    )
    return row_id


async def page(
    conn: AsyncConnection, filters: Filters, *, cursor: str | None, limit: int
) -> models.Page[models.AuditRecord]:
    """Newest first, keyset-paginated on the id. Raises CursorInvalid (a ValueError)."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    query = select(audit_log).order_by(audit_log.c.id.desc())
    for name in ("actor", "action", "target", "project", "outcome"):
        value = getattr(filters, name)
        if value is not None:
            query = query.where(audit_log.c[name] == value)
    if filters.since is not None:
        query = query.where(audit_log.c.at >= filters.since)
    if filters.until is not None:
        query = query.where(audit_log.c.at < filters.until)
    if cursor is not None:
        query = query.where(audit_log.c.id < _position(cursor))
    rows = (await conn.execute(query.limit(limit + 1))).all()
    items = [models.AuditRecord(id=row.id, **_entry_fields(row)) for row in rows[:limit]]
    next_cursor = encode_cursor("a", rows[limit - 1].id) if len(rows) > limit else None
    return models.Page[models.AuditRecord](items=items, next_cursor=next_cursor)


async def rows(conn: AsyncConnection, batch: int = VERIFY_BATCH) -> AsyncIterator[list[ChainedRow]]:
    """Every row in id order, ``batch`` at a time (each batch one keyset query)."""
    after = 0
    while True:
        query = (
            select(audit_log).where(audit_log.c.id > after).order_by(audit_log.c.id).limit(batch)
        )
        found = [_chained(row) for row in await conn.execute(query)]
        if not found:
            return
        yield found
        after = found[-1].id


async def head(conn: AsyncConnection) -> tuple[int, bytes]:
    """The last row's id and hash, as the chain's head says."""
    row = (await conn.execute(select(audit_head).where(audit_head.c.id == 1))).one()
    return int(row.last_id), bytes(row.last_hash)


def _entry_fields(row: Row[Any]) -> dict[str, Any]:
    return {name: getattr(row, name) for name in (*_FIELDS, "detail")}


def _chained(row: Row[Any]) -> ChainedRow:
    return ChainedRow(
        id=int(row.id),
        entry=AuditEntry(**_entry_fields(row)),
        prev_hash=bytes(row.prev_hash),
        hash=bytes(row.hash),
    )


def _position(cursor: str) -> int:
    position = decode_cursor("a", cursor)
    if len(position) != 1 or type(position[0]) is not int:
        raise CursorInvalid(f"cursor {cursor!r} is not valid")
    return position[0]
