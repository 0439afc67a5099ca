"""The audit log, newest first."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AfterValidator, AwareDatetime, BeforeValidator

from app.api import guard
from app.api.deps import AuditDep
from app.api.errors import problems
from app.api.guard import CallerDep, GuardedRoute
from app.api.routes.params import TEXT, Cursor, Limit
from app.auth.audit import Filters
from app.auth.scopes import Action
from app.domain import views as models

router = APIRouter(tags=["admin"], route_class=GuardedRoute)

Exact = Annotated[str | None, Query(max_length=200, pattern=TEXT)]


_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]")  # RFC 3339: a date, then the time


def _date_time_text(value: object) -> object:
    # Pydantic would take a number as seconds since 1970: the schema says RFC 3339 text.
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        raise ValueError("expected an RFC 3339 date-time, such as 2026-12-07T21:00:00Z")
    return value


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range in UTC") from None


Instant = Annotated[AwareDatetime, BeforeValidator(_date_time_text), AfterValidator(_utc)]


@router.get(
    "/v1/admin/audit",
    summary="Read the audit log, newest first",
    description="Who did what: workflow writes, run control, form answers, key and credential "
    "changes, refused credentials (sampled). Every filter given must match; `since` and "
    "`until` bound `at` (`since` included, `until` not).",
    response_model=models.Page[models.AuditRecord],
    responses=problems(422),
    openapi_extra=guard.needs(Action.ADMIN),
)
async def list_audit(
    audit: AuditDep,
    caller: CallerDep,
    actor: Annotated[
        str | None,
        Query(max_length=200, pattern=TEXT, description="`key:<key id>`, `sub:<subject>`."),
    ] = None,
    action: Annotated[
        str | None, Query(max_length=200, pattern=TEXT, description="Such as `run.cancel`.")
    ] = None,
    target: Exact = None,
    project: Exact = None,
    outcome: Exact = None,
    since: Annotated[
        Instant | None,
        Query(
            json_schema_extra={"pattern": TEXT},
            description="At or after this time (with its offset).",
        ),
    ] = None,
    until: Annotated[
        Instant | None,
        Query(
            json_schema_extra={"pattern": TEXT}, description="Before this time (with its offset)."
        ),
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> models.Page[models.AuditRecord]:
    if caller.project is not None and project not in (None, caller.project):
        return models.Page[models.AuditRecord](items=[])  # another project's rows: none here
    project = caller.project or project  # an admin of one project reads that project's rows
    filters = Filters(actor, action, target, project, outcome, since, until)
    return await audit.page(filters, cursor=cursor, limit=limit)
