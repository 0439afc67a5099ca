"""Forms and approvals for reviewers: list, read, answer; and the deadline sweeper.

An answer is validated before anything is stored (422, one error per field), recorded under the
form's row lock (so of concurrent answers exactly one decides a form; the rest get 409), kept in
the audit trail, and — once the form is decided — handed to its run: a waiting run is queued
again for any replica to continue; a run still busy with other branches finds the answer when
it settles (``pending_answers``). Who answered (``by``, ``groups``) and the run's starter (for
``allow_self_approval``) come from the caller's credentials once there are any
(:mod:`app.api.identity`), else from the request.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.auth import context
from app.domain import human
from app.domain import views as models
from app.engine.compile.inputs import apply_defaults, validate_inputs
from app.errors import (
    ErrorDetail,
    FormAlreadyAnswered,
    FormClosed,
    FormNotFound,
    NotAnApprover,
    SubmissionInvalid,
)
from app.services import audit, identity
from app.services.audit import AuditAction
from app.store import db
from app.store import forms as store

SWEEP_BATCH = 100  # overdue forms per transaction
Answered = Callable[[str, datetime, datetime], None]  # kind, created at, answered at


class FormService:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        queued: Callable[[str], None],
        answered: Answered | None = None,
    ) -> None:
        self._engine = engine
        self._read = db.autocommit(engine)
        self._queued = queued  # a run was queued again: replicas should claim it
        self._answered = answered  # metrics: a form was decided by people

    async def get(self, form_id: str) -> models.Form:
        async with self._read.connect() as conn:
            form = await store.get(conn, form_id, project=context.project())
        if form is None:
            raise FormNotFound(f"no form {form_id!r}")
        return form

    async def list(
        self,
        *,
        statuses: Collection[str] | None,
        execution_id: str | None,
        workflow_id: str | None,
        assignee: str | None,
        limit: int,
        cursor: str | None,
    ) -> models.Page[models.Form]:
        async with self._read.connect() as conn:
            return await store.list_forms(
                conn,
                statuses=statuses,
                execution_id=execution_id,
                workflow_id=workflow_id,
                assignee=assignee,
                limit=limit,
                cursor=cursor,
                project=context.project(),
            )

    async def submit(
        self,
        form_id: str,
        *,
        values: dict[str, Any],
        by: str | None,
        comment: str | None,
        groups: builtins.list[str],
    ) -> models.Form:
        """Answer a form or approval; raises FormNotFound, SubmissionInvalid (422), FormClosed
        or FormAlreadyAnswered (409), NotAnApprover (403)."""
        at = datetime.now(UTC)
        async with self._read.connect() as conn:
            form = await store.read(conn, form_id, project=context.project())
        if form is None:
            raise FormNotFound(f"no form {form_id!r}")
        by, groups = identity.answerer(by, groups)
        _still_pending(form)
        if form.kind != "approval":
            return await self._fill(form, values, by, comment, at)
        async with self._engine.begin() as conn:
            form = await store.lock(conn, form_id, project=context.project())
            assert form is not None  # forms are never deleted but with their run
            _still_pending(form)
            decided = await self._approve(conn, form, values, by, comment, groups, at)
            queued = decided is not None and await store.decide(
                conn, form, status=store.SUBMITTED, answer=decided, at=at
            )
            await _audit(conn, form, by, values.get("decision"))
        if decided is not None and self._answered is not None:
            self._answered(form.kind, form.created_at, at)
        if queued:
            self._queued(form.execution_id)
        return await self.get(form_id)

    async def _fill(
        self,
        form: Row[Any],
        values: dict[str, Any],
        by: str | None,
        comment: str | None,
        at: datetime,
    ) -> models.Form:
        """A form takes one answer: validated, then stored with the form's decision and the
        run's wake-up in one statement; the answer is built from what was sent, not re-read."""
        values = apply_defaults(form.fields, values)
        _check(form.fields, values)
        answer = {"values": values, "by": by, "comment": comment, "at": at.isoformat()}
        async with self._engine.begin() as conn:
            status = await store.fill(conn, form, answer=answer, by=by, comment=comment, at=at)
            if status is not None:
                await _audit(conn, form, by, None)
        if status is None:  # another answer or the deadline came first
            _still_pending(await self.get(form.id))
            raise FormClosed(f"form {form.id!r} takes no more answers")
        if self._answered is not None:
            self._answered(form.kind, form.created_at, at)
        if status == store.QUEUED:
            self._queued(form.execution_id)
            await asyncio.sleep(0)  # let the claimer send its claim before this answer is built
        return store.decided_view(form, answer=answer, at=at)

    async def _approve(
        self,
        conn: Any,
        form: Row[Any],
        values: dict[str, Any],
        by: str | None,
        comment: str | None,
        groups: builtins.list[str],
        at: datetime,
    ) -> dict[str, Any] | None:
        """Record one approver's answer; the decision once there is one (None before)."""
        _check(human.approval_fields(), values)
        if by is None:
            raise SubmissionInvalid(
                [ErrorDetail("/by", "an approval needs to know who answers", "required")]
            )
        if not _may_answer(form.approvers, by, groups):
            raise NotAnApprover(f"{by!r} is not among this approval's approvers")
        if not form.allow_self_approval and by == await store.started_by(conn, form):
            raise NotAnApprover(f"{by!r} started this run and may not approve it")
        comment = values.get("comment", comment)
        answer = {"decision": values["decision"], "comment": comment}
        given = await store.approvals(conn, form.id)  # under the form's lock: all of them
        if any(a["by"] == by for a in given):
            raise FormAlreadyAnswered(f"{by!r} already answered this approval")
        await store.add_answer(conn, form, values=answer, by=by, comment=comment, at=at)
        given.append(
            {"by": by, "decision": answer["decision"], "comment": comment, "at": at.isoformat()}
        )
        approved = [a for a in given if a["decision"] == human.APPROVED]
        if values["decision"] == human.REJECTED:
            decision = human.REJECTED
        elif len(approved) >= form.quorum:
            decision = human.APPROVED
        else:
            return None  # waiting for more approvals
        return {
            "decision": decision,
            "comment": comment,
            "by": by,
            "at": at.isoformat(),
            "approvals": given,
        }

    async def expire_due(self) -> int:
        """Close pending forms past their deadline (one replica acts on each); the runs follow
        their ``on_timeout``. Returns how many were closed."""
        closed = 0
        while True:
            now = datetime.now(UTC)
            queued: builtins.list[str] = []
            async with self._engine.begin() as conn:
                overdue = await store.overdue(conn, now, SWEEP_BATCH)
                for form in overdue:
                    answer = {"timed_out": True, "deadline": form.deadline.isoformat()}
                    if await store.decide(
                        conn, form, status=store.TIMED_OUT, answer=answer, at=now
                    ):
                        queued.append(form.execution_id)
            for execution_id in queued:
                self._queued(execution_id)
            closed += len(overdue)
            if len(overdue) < SWEEP_BATCH:
                return closed


async def _audit(conn: AsyncConnection, form: Row[Any], by: str | None, decision: Any) -> None:
    """The answer's audit row (who answered, as given, beside who is calling)."""
    detail = {"execution_id": form.execution_id, "kind": form.kind, "by": by}
    if decision is not None:
        detail["decision"] = decision
    await audit.record(
        conn, action=AuditAction.FORM_ANSWER, target=form.id, project=form.project, detail=detail
    )


def _still_pending(form: Row[Any] | models.Form) -> None:
    if form.status != store.PENDING:
        raise FormClosed(f"form {form.id!r} is {form.status}: it takes no more answers")


def _may_answer(approvers: list[str] | None, by: str, groups: list[str]) -> bool:
    """Anyone when no approvers are named; else a named user or a member of a named group."""
    if approvers is None or by in approvers:
        return True
    return any(f"group:{group}" in approvers for group in groups)


def _check(fields: dict[str, Any], values: dict[str, Any]) -> None:
    problems = validate_inputs(fields, values, formats=True)
    if problems:
        raise SubmissionInvalid(
            [ErrorDetail("/values" + p.pointer.rstrip("/"), p.message, p.code) for p in problems]
        )
