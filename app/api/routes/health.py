"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.api import metrics
from app.api.deps import ServicesDep
from app.api.errors import ApiProblem, problems
from app.api.schemas import Status

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    summary="Liveness: the process answers",
    response_model=Status,
    responses=problems(),
)
async def healthz() -> Status:
    return Status(status="ok")


@router.get(
    "/readyz",
    summary="Readiness: the database is reachable and migrated",
    response_model=Status,
    responses=problems(503),
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
)
async def prometheus_metrics(request: Request) -> Response:
    body, content_type = await metrics.render(request.app, request.headers.get("accept"))
    return Response(body, media_type=content_type)
