"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api import guard, metrics
from app.api.deps import ServicesDep
from app.api.errors import ApiProblem, problems
from app.api.guard import GuardedRoute
from app.api.schemas import Status
from app.auth.scopes import Action

router = APIRouter(tags=["operations"], route_class=GuardedRoute)


@router.get(
    "/healthz",
    summary="Liveness: the process answers",
    response_model=Status,
    responses=problems(),
    openapi_extra=guard.needs(Action.PUBLIC),
)
async def healthz() -> Status:
    return Status(status="ok")


@router.get(
    "/readyz",
    summary="Readiness: the database is reachable and migrated",
    response_model=Status,
    responses=problems(503),
    openapi_extra=guard.needs(Action.PUBLIC),
)
async def readyz(services: ServicesDep) -> Status:
    ready, reason = await services.ready()
    if not ready:
        raise ApiProblem(503, "not_ready", reason)
    return Status(status="ready")


@router.get(
    "/metrics",
    summary="Prometheus metrics (text format, or OpenMetrics with exemplars when accepted)",
    description="Answers in the OpenMetrics format, with `trace_id` exemplars on histograms, "
    "when `Accept` names `application/openmetrics-text`; else in Prometheus' text format.",
    response_class=Response,
    responses={
        200: {
            "content": {
                metrics.CONTENT_TYPE: {"schema": {"type": "string"}},
                metrics.OPENMETRICS_CONTENT_TYPE: {"schema": {"type": "string"}},
            }
        },
        **problems(),
    },
    openapi_extra=guard.needs(Action.READ_METRICS),
)
async def prometheus_metrics(request: Request) -> Response:
    body, content_type = await metrics.render(request.app, request.headers.get("accept"))
    return Response(body, media_type=content_type)
