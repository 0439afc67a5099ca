"""Form and approval requests, their answers, and the wake-up of the runs waiting on them
(Core, on a connection the caller passes: the service owns the transaction).

Rows are created by the journal from ``form.requested`` events; this module reads them, records
answers and deadlines, and tells a run that its answers are in. The executions row is always
locked after the form row (never before), the order the journal never contradicts.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Row,
    and_,
    bindparam,
    case,
    exists,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain import views as models
from app.domain.status import ExecutionStatus, Move
from app.errors import CursorInvalid
from app.store import projects, status_sql
from app.store.tables import executions, form_submissions, forms
from app.store.workflows import decode_cursor, encode_cursor

_E = ExecutionStatus
PENDING, SUBMITTED, TIMED_OUT, CANCELLED = "pending", "submitted", "timed_out", "cancelled"
QUEUED = ExecutionStatus.QUEUED.value
ANSWERED = (SUBMITTED, TIMED_OUT)


async def lock(
    conn: AsyncConnection, form_id: str, *, project: str | None = None
) -> Row[Any] | None:
    """The form's row, locked until the transaction ends (answers to one form queue up)."""
    query = (
        select(forms)
        .where(forms.c.id == form_id, projects.visible(forms, project))
        .with_for_update()
    )
    return (await conn.execute(query)).first()


async def read(
    conn: AsyncConnection, form_id: str, *, project: str | None = None
) -> Row[Any] | None:
    """The form's row, as it is now (not locked)."""
    query = select(forms).where(forms.c.id == form_id, projects.visible(forms, project))
    return (await conn.execute(query)).first()


def decided_view(form: Row[Any], *, answer: dict[str, Any], at: datetime) -> models.Form:
    """The form as :func:`fill` left it: submitted with ``answer``, its one answer."""
    given = models.FormAnswer(
        by=answer["by"], values=answer["values"], comment=answer["comment"], at=at
    )
    return _form(form, [given]).model_copy(
        update={"status": SUBMITTED, "answer": answer, "decided_at": at}
    )


async def get(
    conn: AsyncConnection, form_id: str, *, project: str | None = None
) -> models.Form | None:
    row = await read(conn, form_id, project=project)
    if row is None:
        return None
    query = (
        select(form_submissions)
        .where(form_submissions.c.form_id == form_id)
        .order_by(form_submissions.c.created_at, form_submissions.c.id)
    )
    answers = [
        models.FormAnswer(by=a.by, values=a._mapping["values"], comment=a.comment, at=a.created_at)
        for a in await conn.execute(query)
    ]
    return _form(row, answers)


async def list_forms(
    conn: AsyncConnection,
    *,
    statuses: Collection[str] | None,
    execution_id: str | None,
    workflow_id: str | None,
    assignee: str | None,
    limit: int,
    cursor: str | None,
    project: str | None = None,
) -> models.Page[models.Form]:
    """Newest first, keyset-paginated on (created_at, id)."""
    query = (
        select(forms)
        .where(projects.visible(forms, project))
        .order_by(forms.c.created_at.desc(), forms.c.id.desc())
    )
    if statuses:
        query = query.where(forms.c.status.in_(list(statuses)))
    if execution_id is not None:
        query = query.where(forms.c.execution_id == execution_id)
    if workflow_id is not None:
        query = query.where(forms.c.workflow_id == workflow_id)
    if assignee is not None:
        query = query.where(_lists(conn, assignee))
    if cursor is not None:
        created, form_id = _position(cursor)
        query = query.where(
            or_(
                forms.c.created_at < created,
                and_(forms.c.created_at == created, forms.c.id < form_id),
            )
        )
    rows = (await conn.execute(query.limit(limit + 1))).all()
    items = [_form(row, []) for row in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    next_cursor = (
        encode_cursor("f", last.created_at.isoformat(), last.id) if last is not None else None
    )
    return models.Page[models.Form](items=items, next_cursor=next_cursor)


def _position(cursor: str) -> tuple[datetime, str]:
    position = decode_cursor("f", cursor)
    try:
        if len(position) == 2 and all(isinstance(p, str) for p in position):
            return datetime.fromisoformat(position[0]), position[1]
    except ValueError:
        pass
    raise CursorInvalid(f"cursor {cursor!r} is not valid")


def _lists(conn: AsyncConnection, approver: str) -> Any:
    """The form's ``approvers`` names ``approver``."""
    if conn.dialect.name == "postgresql":
        return forms.c.approvers.cast(JSONB).contains([approver])
    each = func.json_each(forms.c.approvers).table_valued("value")
    return exists(select(literal_column("1")).select_from(each).where(each.c.value == approver))


async def add_answer(
    conn: AsyncConnection,
    form: Row[Any],
    *,
    values: dict[str, Any],
    by: str | None,
    comment: str | None,
    at: datetime,
) -> None:
    """Keep an answer in the audit trail. Callers hold the form's lock and have checked that
    ``by`` did not answer yet (the unique index on form and person is only the safety net)."""
    await conn.execute(
        form_submissions.insert().values(
            id=str(uuid.uuid4()),
            execution_id=form.execution_id,
            form_id=form.id,
            node_key=form.node_key,
            values=values,
            by=by,
            comment=comment,
            created_at=at,
        )
    )


async def approvals(conn: AsyncConnection, form_id: str) -> list[dict[str, Any]]:
    """The answers recorded for an approval so far, oldest first."""
    query = (
        select(
            form_submissions.c.by,
            form_submissions.c["values"],
            form_submissions.c.comment,
            form_submissions.c.created_at,
        )
        .where(form_submissions.c.form_id == form_id)
        .order_by(form_submissions.c.created_at, form_submissions.c.id)
    )
    return [
        {
            "by": r.by,
            "decision": r._mapping["values"].get("decision"),
            "comment": r.comment,
            "at": r.created_at.isoformat(),
        }
        for r in await conn.execute(query)
    ]


async def decide(
    conn: AsyncConnection, form: Row[Any], *, status: str, answer: dict[str, Any], at: datetime
) -> bool:
    """Close the form with its answer and wake its run; True when the run is queued now (it was
    waiting). A run still busy elsewhere finds the answer when it settles (pending_answers)."""
    await conn.execute(
        update(forms)
        .where(forms.c.id == form.id, forms.c.status == PENDING, forms.c.project == form.project)
        .values(status=status, answer=answer, decided_at=at)
    )
    result = await conn.execute(
        update(executions)
        .where(executions.c.id == form.execution_id, executions.c.project == form.project)
        .values(**_woken(at))
        .returning(executions.c.status)
    )
    now_status: str | None = result.scalar_one_or_none()
    return now_status == _E.QUEUED.value


async def fill(
    conn: AsyncConnection,
    form: Row[Any],
    *,
    answer: dict[str, Any],
    by: str | None,
    comment: str | None,
    at: datetime,
) -> str | None:
    """Decide a pending ``form`` (kind ``form``: one answer decides it) with ``answer``, keep
    the answer in the audit trail and wake the run, as one statement on Postgres (a submit is
    on the path from a person's click to the run going on); the run's status afterwards, or
    None when the form was no longer pending (another answer, a deadline came first).

    The form's row is locked before the run's, as everywhere.
    """
    if conn.dialect.name != "postgresql":  # in a transaction (see db.one_statement)
        locked = await lock(conn, form.id)
        if locked is None or locked.status != PENDING:
            return None
        await add_answer(conn, locked, values=answer["values"], by=by, comment=comment, at=at)
        queued = await decide(conn, locked, status=SUBMITTED, answer=answer, at=at)
        return _E.QUEUED.value if queued else _E.RUNNING.value
    result = await conn.execute(
        _FILL,
        {
            "form_id": form.id,
            "answer": answer,
            "at": at,
            "submission_id": str(uuid.uuid4()),
            "values": answer["values"],
            "by": by,
            "comment": comment,
            "form_project": form.project,
        },
    )
    row = result.first()
    return None if row is None else str(row.status)


def _woken(at: Any) -> dict[str, Any]:
    """What an answer does to its run's row: counted, and a waiting run queued (see the
    ``answer`` move); ``at`` is a time or a bound parameter."""
    waiting = status_sql.applies(Move.ANSWER)
    return {
        "pending_answers": executions.c.pending_answers + 1,
        "status": case((waiting, status_sql.target(Move.ANSWER)), else_=executions.c.status),
        "resume_reason": case(
            (waiting, status_sql.resume_reason(Move.ANSWER, executions.c.resume_reason)),
            else_=executions.c.resume_reason,
        ),
        "updated_at": at,
    }


def _fill_statement() -> Any:
    """UPDATE the form (if still pending) → INSERT its answer → UPDATE the run, chained by
    data-modifying CTEs: one round trip, one commit."""
    decided = (
        update(forms)
        .where(
            forms.c.id == bindparam("form_id"),
            forms.c.status == PENDING,
            forms.c.project == bindparam("form_project", type_=forms.c.project.type),
        )
        .values(
            status=SUBMITTED,
            answer=bindparam("answer", type_=forms.c.answer.type),
            decided_at=bindparam("at", type_=forms.c.decided_at.type),
        )
        .returning(forms.c.id, forms.c.execution_id, forms.c.node_key)
        .cte("decided")
    )
    kept = (
        form_submissions.insert()
        .from_select(
            ["id", "execution_id", "form_id", "node_key", "values", "by", "comment", "created_at"],
            select(
                bindparam("submission_id", type_=form_submissions.c.id.type),
                decided.c.execution_id,
                decided.c.id,
                decided.c.node_key,
                bindparam("values", type_=form_submissions.c["values"].type),
                bindparam("by", type_=form_submissions.c.by.type),
                bindparam("comment", type_=form_submissions.c.comment.type),
                bindparam("at", type_=form_submissions.c.created_at.type),
            ),
        )
        .cte("kept")
    )
    woken = (
        update(executions)
        .where(executions.c.id.in_(select(decided.c.execution_id)))
        .values(**_woken(bindparam("at", type_=executions.c.updated_at.type)))
        .returning(executions.c.status)
    )
    return woken.add_cte(decided).add_cte(kept)


_FILL = _fill_statement()


async def overdue(conn: AsyncConnection, now: datetime, limit: int) -> list[Row[Any]]:
    """Pending forms past their deadline, locked (other sweepers skip them)."""
    query = (
        select(forms)
        .where(forms.c.status == PENDING, forms.c.deadline < now)
        .order_by(forms.c.deadline)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await conn.execute(query)).all())


async def answers(conn: AsyncConnection, execution_id: str) -> dict[str, dict[str, Any]]:
    """node key → the latest answered request of that node (what a resumed run delivers)."""
    query = (
        select(forms.c.id, forms.c.node_key, forms.c.status, forms.c.answer)
        .where(forms.c.execution_id == execution_id, forms.c.status.in_(ANSWERED))
        .order_by(forms.c.created_at)
    )
    return {
        row.node_key: {"form_id": row.id, "status": row.status, "answer": row.answer}
        for row in await conn.execute(query)
    }


async def started_by(conn: AsyncConnection, form: Row[Any]) -> str | None:
    """Who started the run that asks ``form``."""
    query = select(executions.c.started_by).where(
        executions.c.id == form.execution_id, executions.c.project == form.project
    )
    starter: str | None = (await conn.execute(query)).scalar_one_or_none()
    return starter


def _form(row: Row[Any], answers_: list[models.FormAnswer]) -> models.Form:
    return models.Form(
        id=row.id,
        execution_id=row.execution_id,
        workflow_id=row.workflow_id,
        node_key=row.node_key,
        kind=row.kind,
        status=row.status,
        prompt=row.prompt,
        fields=row.fields,
        context=row.context,
        approvers=row.approvers,
        quorum=row.quorum,
        allow_self_approval=row.allow_self_approval,
        on_timeout=row.on_timeout,
        deadline=row.deadline,
        created_at=row.created_at,
        decided_at=row.decided_at,
        answer=row.answer,
        answers=answers_,
        project=row.project,
    )
