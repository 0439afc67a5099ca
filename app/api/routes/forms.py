"""Forms and approvals waiting for people: list, read, answer."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from app.api import guard
from app.api.deps import FormsDep
from app.api.errors import problems
from app.api.guard import GuardedRoute
from app.api.routes.params import TEXT, Cursor, FormId, IdFilter, Limit
from app.api.schemas import SubmitForm
from app.auth.scopes import Action
from app.domain import views as models

router = APIRouter(tags=["forms"], route_class=GuardedRoute)

FormStatus = Literal["pending", "submitted", "timed_out", "cancelled"]


@router.get(
    "/v1/forms",
    summary="List forms and approvals, newest first",
    response_model=models.Page[models.Form],
    responses=problems(422),
    openapi_extra=guard.needs(Action.READ_FORMS),
)
async def list_forms(
    forms: FormsDep,
    status: Annotated[
        list[FormStatus] | None, Query(description="Only these statuses (repeatable).")
    ] = None,
    execution_id: IdFilter = None,
    workflow_id: IdFilter = None,
    assignee: Annotated[
        str | None,
        Query(max_length=200, pattern=TEXT, description="Only those naming this approver."),
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> models.Page[models.Form]:
    return await forms.list(
        statuses=status,
        execution_id=execution_id,
        workflow_id=workflow_id,
        assignee=assignee,
        limit=limit,
        cursor=cursor,
    )


@router.get(
    "/v1/forms/{form_id}",
    summary="One form or approval: fields, prompt, deadline, answers",
    response_model=models.Form,
    responses=problems(404, 422),
    openapi_extra=guard.needs(Action.READ_FORMS),
)
async def get_form(form_id: FormId, forms: FormsDep) -> models.Form:
    return await forms.get(form_id)


@router.post(
    "/v1/forms/{form_id}/submit",
    summary="Answer a form or approval; the run continues once it is decided",
    description="Values are validated against the form's `fields` (an approval's: `decision` = "
    "`approved` | `rejected`, optional `comment`): 422 with one error per field, nothing "
    "stored. A form takes one answer; an approval one per approver until it is decided (quorum "
    "reached, or one rejection). Answers to a decided form, or a second answer by the same "
    "approver, get 409.",
    response_model=models.Form,
    responses=problems(403, 404, 409, 413, 422),
    openapi_extra=guard.needs(Action.ANSWER_FORMS),
)
async def submit_form(form_id: FormId, body: SubmitForm, forms: FormsDep) -> models.Form:
    return await forms.submit(
        form_id, values=body.values, by=body.by, comment=body.comment, groups=body.groups
    )
