"""Workflow queries (Core) on a connection the caller passes: the service owns the transaction."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain import views as models
from app.errors import CursorInvalid, WorkflowArchived, WorkflowNotFound
from app.store import projects
from app.store.tables import workflow_versions, workflows


async def insert_workflow(
    conn: AsyncConnection,
    *,
    workflow_id: str,
    name: str,
    document: dict[str, Any],
    content_hash: str,
    now: datetime,
    project: str,
) -> None:
    """A new workflow of ``project`` with its version 1."""
    await conn.execute(
        workflows.insert().values(
            id=workflow_id,
            name=name,
            latest_version=1,
            created_at=now,
            updated_at=now,
            project=project,
        )
    )
    await conn.execute(
        workflow_versions.insert().values(
            workflow_id=workflow_id,
            version=1,
            document=document,
            content_hash=content_hash,
            created_at=now,
        )
    )


async def insert_version(
    conn: AsyncConnection,
    workflow_id: str,
    *,
    name: str,
    document: dict[str, Any],
    content_hash: str,
    now: datetime,
    project: str | None,
) -> int:
    """Store the next version; returns its number.

    The version is taken by ``UPDATE … SET latest_version = latest_version + 1 RETURNING``: the
    update locks the row (as ``SELECT … FOR UPDATE`` would, in the same round trip), so
    concurrent calls get distinct consecutive versions on Postgres, and on SQLite it is the
    write that takes the database lock. Raises WorkflowNotFound or WorkflowArchived.
    """
    bumped = await conn.execute(
        update(workflows)
        .where(
            workflows.c.id == workflow_id,
            workflows.c.archived_at.is_(None),
            projects.visible(workflows, project),
        )
        .values(latest_version=workflows.c.latest_version + 1, name=name, updated_at=now)
        .returning(workflows.c.latest_version)
    )
    version = bumped.scalar_one_or_none()
    if version is None:
        found = await conn.execute(
            select(workflows.c.id).where(
                workflows.c.id == workflow_id, projects.visible(workflows, project)
            )
        )
        if found.first() is None:
            raise WorkflowNotFound(f"no workflow {workflow_id!r}")
        raise WorkflowArchived(f"workflow {workflow_id!r} is archived")
    await conn.execute(
        workflow_versions.insert().values(
            workflow_id=workflow_id,
            version=version,
            document=document,
            content_hash=content_hash,
            created_at=now,
        )
    )
    return int(version)


async def get_workflow(
    conn: AsyncConnection,
    workflow_id: str,
    version: int | None = None,
    *,
    project: str | None,
) -> models.Workflow | None:
    """One version (the latest when ``version`` is None), archived or not."""
    wanted = workflows.c.latest_version if version is None else version
    query = (
        select(
            workflows,
            workflow_versions.c.version,
            workflow_versions.c.document,
            workflow_versions.c.content_hash,
            workflow_versions.c.created_at.label("version_created_at"),
        )
        .join(workflow_versions, workflow_versions.c.workflow_id == workflows.c.id)
        .where(
            workflows.c.id == workflow_id,
            workflow_versions.c.version == wanted,
            projects.visible(workflows, project),
        )
    )
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    return models.Workflow(
        id=row.id,
        name=row.name,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        archived=row.archived_at is not None,
        project=row.project,
        document=row.document,
        content_hash=row.content_hash,
        version_created_at=row.version_created_at,
    )


async def workflow_head(
    conn: AsyncConnection, workflow_id: str, *, project: str | None
) -> tuple[int, bool, str] | None:
    """(latest version, archived, project) of a workflow, without any document."""
    query = select(workflows.c.latest_version, workflows.c.archived_at, workflows.c.project).where(
        workflows.c.id == workflow_id, projects.visible(workflows, project)
    )
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    return row.latest_version, row.archived_at is not None, row.project


async def list_workflows(
    conn: AsyncConnection,
    *,
    limit: int,
    cursor: str | None,
    include_archived: bool = False,
    project: str | None,
) -> models.Page[models.WorkflowSummary]:
    """Newest first, keyset-paginated on (created_at, id). Raises CursorInvalid (a ValueError)."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    query = (
        select(workflows)
        .where(projects.visible(workflows, project))
        .order_by(workflows.c.created_at.desc(), workflows.c.id.desc())
    )
    if not include_archived:
        query = query.where(workflows.c.archived_at.is_(None))
    if cursor is not None:
        created_at, last_id = _workflow_position(cursor)
        query = query.where(
            or_(
                workflows.c.created_at < created_at,
                and_(workflows.c.created_at == created_at, workflows.c.id < last_id),
            )
        )
    rows = (await conn.execute(query.limit(limit + 1))).all()
    items = [
        models.WorkflowSummary(
            id=row.id,
            name=row.name,
            version=row.latest_version,
            created_at=row.created_at,
            updated_at=row.updated_at,
            archived=row.archived_at is not None,
            project=row.project,
        )
        for row in rows[:limit]
    ]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        next_cursor = encode_cursor("w", last.created_at.isoformat(), last.id)
    return models.Page[models.WorkflowSummary](items=items, next_cursor=next_cursor)


async def archive_workflow(
    conn: AsyncConnection, workflow_id: str, now: datetime, *, project: str | None
) -> bool:
    """Archive (idempotent: the first archive time stays); False when there is no such workflow."""
    mine = projects.visible(workflows, project)
    result = await conn.execute(
        update(workflows)
        .where(workflows.c.id == workflow_id, workflows.c.archived_at.is_(None), mine)
        .values(archived_at=now, updated_at=now)
    )
    if result.rowcount:
        return True
    found = await conn.execute(select(exists().where(workflows.c.id == workflow_id, mine)))
    return bool(found.scalar())


# -- cursors ----------------------------------------------------------------------------------


def encode_cursor(kind: str, *position: Any) -> str:
    """An opaque cursor: the list's kind and the last item's sort key, as base64url JSON."""
    raw = json.dumps([kind, *position], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str) -> list[Any]:
    """The sort key a cursor of ``kind`` holds; raises CursorInvalid for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise CursorInvalid(f"cursor {cursor!r} is not valid") from exc
    if not isinstance(value, list) or not value or value[0] != kind:
        raise CursorInvalid(f"cursor {cursor!r} does not belong to this list")
    if not all(map(_storable, value)):  # forged: the database would refuse to compare it
        raise CursorInvalid(f"cursor {cursor!r} is not valid")
    return value[1:]


def _storable(part: Any) -> bool:
    if isinstance(part, str):
        return "\x00" not in part
    return not isinstance(part, int) or -(2**63) <= part < 2**63


def _workflow_position(cursor: str) -> tuple[datetime, str]:
    position = decode_cursor("w", cursor)
    try:
        created_at, last_id = position
        moment = datetime.fromisoformat(created_at)
    except (TypeError, ValueError) as exc:
        raise CursorInvalid(f"cursor {cursor!r} is not valid") from exc
    if not isinstance(last_id, str) or moment.tzinfo is None:
        raise CursorInvalid(f"cursor {cursor!r} is not valid")
    return moment, last_id
