"""Recording who did what, and reading and checking the record.

Callers name the action, its target and how it went; who asked (the key id or subject, never
the key), the request id and the client address come from the request being served
(:mod:`app.auth.context`). A row is written in the caller's transaction (:func:`record`), as
its last statement: the action and its row commit or roll back together, and the chain's head
stays locked only until that commit. Refusals that change nothing (sampled authentication
failures) are written on their own (:func:`record_alone`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.auth import context
from app.auth.audit import OK, AuditEntry, Filters, Verifier
from app.auth.principal import DEFAULT_PROJECT
from app.domain import views as models
from app.store import audit as store
from app.store import db


class AuditAction(StrEnum):
    """The actions the log records (a plain string works too, for an action not listed)."""

    WORKFLOW_CREATE = "workflow.create"
    WORKFLOW_UPDATE = "workflow.update"
    WORKFLOW_ARCHIVE = "workflow.archive"
    RUN_START = "run.start"
    RUN_PAUSE = "run.pause"
    RUN_RESUME = "run.resume"
    RUN_CANCEL = "run.cancel"
    RUN_RETRY = "run.retry"
    RUN_DELETE = "run.delete"
    FORM_ANSWER = "form.answer"
    KEY_CREATE = "key.create"
    KEY_REVOKE = "key.revoke"
    KEY_ROTATE = "key.rotate"
    CREDENTIAL_CREATE = "credential.create"
    CREDENTIAL_DELETE = "credential.delete"
    AUTH_FAILURE = "auth.failure"


def entry(
    action: str,
    *,
    target: str,
    project: str | None = None,
    outcome: str = OK,
    detail: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """An entry for the current request's caller. ``project`` is the target's project; when
    not given, the caller's (or the default project for a caller that sees every project)."""
    request = context.current()
    principal = context.principal()
    return AuditEntry(
        at=datetime.now(UTC),
        actor=principal.actor,
        action=str(action),
        target=target,
        project=project or principal.project or DEFAULT_PROJECT,
        outcome=outcome,
        request_id=None if request is None else request.request_id,
        client_ip=None if request is None else request.client_ip,
        detail=detail,
    )


async def record(
    conn: AsyncConnection,
    *,
    action: str,
    target: str,
    project: str | None = None,
    outcome: str = OK,
    detail: Mapping[str, Any] | None = None,
) -> int:
    """Append a row in ``conn``'s transaction (make it the last statement before commit);
    its id."""
    made = entry(action, target=target, project=project, outcome=outcome, detail=detail)
    return await store.append(conn, made)


async def record_alone(
    engine: AsyncEngine,
    *,
    action: str,
    target: str,
    project: str | None = None,
    outcome: str = OK,
    detail: Mapping[str, Any] | None = None,
) -> int:
    """Append a row in a short transaction of its own; its id."""
    async with engine.begin() as conn:
        return await record(
            conn, action=action, target=target, project=project, outcome=outcome, detail=detail
        )


@dataclass(frozen=True, slots=True)
class Verification:
    rows: int  # rows that follow the chain (all of them when nothing is broken)
    broken: int | None  # the first row id that does not


class AuditService:
    """Reading the log (``GET /v1/admin/audit``) and checking its chain (``oxify audit
    verify``)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._read = db.autocommit(engine)

    async def page(
        self, filters: Filters, *, cursor: str | None, limit: int
    ) -> models.Page[models.AuditRecord]:
        """Newest first; raises CursorInvalid for a cursor this list did not hand out."""
        async with self._read.connect() as conn:
            return await store.page(conn, filters, cursor=cursor, limit=limit)

    async def verify(self) -> Verification:
        """Recompute the chain over every row, in id order, from one snapshot (appends made
        meanwhile are not seen, so they cannot look like a break)."""
        engine = self._engine
        if db.is_postgres(engine):
            engine = engine.execution_options(isolation_level="REPEATABLE READ")
        verifier = Verifier()
        async with engine.begin() as conn:
            async for batch in store.rows(conn):
                if verifier.feed(batch) is not None:
                    break
            else:
                verifier.finish(*await store.head(conn))
        return Verification(verifier.count, verifier.broken)
