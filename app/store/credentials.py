"""Credential rows (Core, on a connection the caller passes: the service owns the transaction).

Every read and write names the project it works in; ``project=None`` means every project
(callers whose credentials see them all). The ciphertext is only ever read by :func:`find`
(a node resolving a credential) and :func:`batch` (re-encryption).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, delete, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ColumnElement

from app.domain import views as models
from app.domain.credentials import Credential
from app.errors import CredentialExists
from app.store.tables import credentials
from app.store.workflows import decode_cursor, encode_cursor

_SHOWN = (
    credentials.c.id,
    credentials.c.project,
    credentials.c.name,
    credentials.c.kind,
    credentials.c.params,
    credentials.c.created_at,
    credentials.c.updated_at,
)


def _in(project: str | None) -> ColumnElement[bool]:
    return credentials.c.project == project if project is not None else true()


async def insert(conn: AsyncConnection, row: dict[str, Any]) -> None:
    """Store a new credential; raises CredentialExists when its name is taken in the project."""
    try:
        await conn.execute(credentials.insert().values(**row))
    except IntegrityError:
        raise CredentialExists(
            f"a credential named {row['name']!r} exists in project {row['project']!r}"
        ) from None


async def get(conn: AsyncConnection, credential_id: str, project: str | None) -> Credential | None:
    query = select(*_SHOWN).where(credentials.c.id == credential_id, _in(project))
    row = (await conn.execute(query)).first()
    return None if row is None else Credential.model_validate(row._mapping)


async def find(conn: AsyncConnection, project: str, name: str) -> Row[Any] | None:
    """The whole row (ciphertext included) of the credential ``name`` in ``project``."""
    query = select(credentials).where(credentials.c.project == project, credentials.c.name == name)
    return (await conn.execute(query)).first()


async def list_page(
    conn: AsyncConnection, project: str | None, *, limit: int, cursor: str | None
) -> models.Page[Credential]:
    """By project and name, keyset-paginated; raises CursorInvalid."""
    query = select(*_SHOWN).where(_in(project))
    if cursor is not None:
        last_project, last_name = decode_cursor("c", cursor)
        query = query.where(
            or_(
                credentials.c.project > last_project,
                and_(credentials.c.project == last_project, credentials.c.name > last_name),
            )
        )
    query = query.order_by(credentials.c.project, credentials.c.name).limit(limit + 1)
    rows = (await conn.execute(query)).all()
    items = [Credential.model_validate(row._mapping) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        next_cursor = encode_cursor("c", items[-1].project, items[-1].name)
    return models.Page[Credential](items=items, next_cursor=next_cursor)


async def remove(conn: AsyncConnection, credential_id: str, project: str | None) -> bool:
    query = delete(credentials).where(credentials.c.id == credential_id, _in(project))
    return (await conn.execute(query)).rowcount > 0


async def batch(conn: AsyncConnection, after_id: str, limit: int) -> Sequence[Row[str, str, bytes]]:
    """The next ``limit`` rows by id after ``after_id`` (id, project, ciphertext), every
    project: what re-encryption walks through."""
    query = (
        select(credentials.c.id, credentials.c.project, credentials.c.ciphertext)
        .where(credentials.c.id > after_id)
        .order_by(credentials.c.id)
        .limit(limit)
    )
    return (await conn.execute(query)).all()


async def reseal(
    conn: AsyncConnection, credential_id: str, old: bytes, new: bytes, now: datetime
) -> bool:
    """Replace the ciphertext if it is still ``old`` (a row changed meanwhile is left alone)."""
    query = (
        update(credentials)
        .where(credentials.c.id == credential_id, credentials.c.ciphertext == old)
        .values(ciphertext=new, updated_at=now)
    )
    return (await conn.execute(query)).rowcount > 0
