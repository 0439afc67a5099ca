"""Workflow analysis: health, complexity, cost estimate, batching opportunities."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from app.api import examples, guard
from app.api.deps import ServicesDep
from app.api.errors import problems
from app.api.guard import GuardedRoute
from app.api.routes.params import Version, WorkflowId
from app.api.schemas import EstimateRequest, WorkflowDocument
from app.auth.scopes import Action
from app.domain import analysis as models
from app.services import analysis

router = APIRouter(prefix="/v1/workflows", tags=["analysis"], route_class=GuardedRoute)


@router.post(
    "/health",
    summary="Score an unsaved workflow document's health",
    response_model=models.HealthReport,
    responses=problems(413, 422),
    openapi_extra=guard.needs(Action.READ_WORKFLOWS),
)
async def document_health(
    document: Annotated[
        WorkflowDocument,
        Body(description="The workflow document.", openapi_examples=examples.DOCUMENTS),
    ],
    services: ServicesDep,
) -> models.HealthReport:
    return await analysis.health_of_document(services, document.root)


@router.get(
    "/{workflow_id}/health",
    summary="Score a workflow's health: issues with pointers and suggestions",
    response_model=models.HealthReport,
    responses=problems(404, 422),
    openapi_extra=guard.needs(Action.READ_WORKFLOWS),
)
async def workflow_health(
    workflow_id: WorkflowId, services: ServicesDep, version: Version = None
) -> models.HealthReport:
    return await analysis.health_of(services, workflow_id, version)


@router.get(
    "/{workflow_id}/complexity",
    summary="Measure a workflow's size, shape and cyclomatic complexity",
    response_model=models.ComplexityReport,
    responses=problems(404, 422),
    openapi_extra=guard.needs(Action.READ_WORKFLOWS),
)
async def workflow_complexity(
    workflow_id: WorkflowId, services: ServicesDep, version: Version = None
) -> models.ComplexityReport:
    return await analysis.complexity_of(services, workflow_id, version)


@router.post(
    "/{workflow_id}/estimate",
    summary="Estimate a run's tokens and dollars per LLM node (low / expected / high)",
    response_model=models.EstimateReport,
    responses=problems(404, 413, 422),
    openapi_extra=guard.needs(Action.READ_WORKFLOWS),
)
async def estimate_workflow(
    workflow_id: WorkflowId,
    services: ServicesDep,
    body: EstimateRequest | None = None,
    version: Version = None,
) -> models.EstimateReport:
    inputs = body.inputs if body is not None else None
    return await analysis.estimate_of(services, workflow_id, version, inputs)


@router.get(
    "/{workflow_id}/batching",
    summary="Find independent nodes calling the same model, collection or host",
    response_model=models.BatchingReport,
    responses=problems(404, 422),
    openapi_extra=guard.needs(Action.READ_WORKFLOWS),
)
async def workflow_batching(
    workflow_id: WorkflowId, services: ServicesDep, version: Version = None
) -> models.BatchingReport:
    return await analysis.batching_of(services, workflow_id, version)
