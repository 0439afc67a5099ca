"""Workflows: validate, create, list, read, new versions, archive, draw."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query, Response, status
from fastapi.responses import PlainTextResponse

from app.api import examples, guard
from app.api.deps import WorkflowsDep
from app.api.errors import problems
from app.api.guard import GuardedRoute
from app.api.routes.params import Cursor, Limit, Version, WorkflowId
from app.api.schemas import WorkflowDocument
from app.auth.scopes import Action
from app.domain import views as models

router = APIRouter(prefix="/v1/workflows", tags=["workflows"], route_class=GuardedRoute)

DocumentBody = Annotated[
    WorkflowDocument,
    Body(
        description="The workflow document; every problem is reported with its pointer.",
        openapi_examples=examples.DOCUMENTS,
    ),
]
GraphFormat = Literal["mermaid", "dot", "ascii"]


@router.post(
    "/validate",
    summary="Validate a workflow document without storing it",
    response_model=models.ValidationResult,
    responses=problems(413, 422),
    openapi_extra=guard.needs(Action.READ_WORKFLOWS),
)
async def validate_workflow(
    document: DocumentBody, workflows: WorkflowsDep
) -> models.ValidationResult:
    return await workflows.validate(document.root)


@router.post(
    "",
    summary="Create a workflow (version 1)",
    status_code=status.HTTP_201_CREATED,
    response_model=models.SavedWorkflow,
    responses=problems(413, 422),
    openapi_extra=guard.needs(Action.WRITE_WORKFLOWS),
)
async def create_workflow(
    document: DocumentBody, workflows: WorkflowsDep, response: Response
) -> models.SavedWorkflow:
    workflow = await workflows.create(document.root)
    response.headers["Location"] = f"/v1/workflows/{workflow.id}"
    return workflow


@router.get(
    "",
    summary="List workflows, newest first",
    response_model=models.Page[models.WorkflowSummary],
    responses=problems(422),
    openapi_extra=guard.needs(Action.READ_WORKFLOWS),
)
async def list_workflows(
    workflows: WorkflowsDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    include_archived: Annotated[bool, Query(description="Include archived workflows.")] = False,
) -> models.Page[models.WorkflowSummary]:
    return await workflows.list(limit=limit, cursor=cursor, include_archived=include_archived)


@router.get(
    "/{workflow_id}",
    summary="Read a workflow version (the latest by default)",
    response_model=models.Workflow,
    responses=problems(404, 422),
    openapi_extra=guard.needs(Action.READ_WORKFLOWS),
)
async def get_workflow(
    workflow_id: WorkflowId, workflows: WorkflowsDep, version: Version = None
) -> models.Workflow:
    return await workflows.get(workflow_id, version)


@router.put(
    "/{workflow_id}",
    summary="Store a new version of a workflow",
    response_model=models.SavedWorkflow,
    responses=problems(404, 409, 413, 422),
    openapi_extra=guard.needs(Action.WRITE_WORKFLOWS),
)
async def update_workflow(
    workflow_id: WorkflowId, document: DocumentBody, workflows: WorkflowsDep
) -> models.SavedWorkflow:
    return await workflows.update(workflow_id, document.root)


@router.delete(
    "/{workflow_id}",
    summary="Archive a workflow (its runs stay readable)",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problems(404, 422),
    openapi_extra=guard.needs(Action.WRITE_WORKFLOWS),
)
async def archive_workflow(workflow_id: WorkflowId, workflows: WorkflowsDep) -> Response:
    await workflows.archive(workflow_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{workflow_id}/graph",
    summary="Draw a workflow as Mermaid, DOT or text",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **problems(404, 422),
    },
    openapi_extra=guard.needs(Action.READ_WORKFLOWS),
)
async def workflow_graph(
    workflow_id: WorkflowId,
    workflows: WorkflowsDep,
    fmt: Annotated[GraphFormat, Query(alias="format", description="Drawing format.")] = "mermaid",
    version: Version = None,
) -> PlainTextResponse:
    return PlainTextResponse(await workflows.graph(workflow_id, version, fmt))
