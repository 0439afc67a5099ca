"""Every HTTP route of the API, in one router for the composition root."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.routing import APIRoute

from app.api.routes import (
    access,
    admin_audit,
    analysis,
    credentials,
    executions,
    forms,
    health,
    limits,
    node_types,
    stream,
    workflows,
)


def operation_id(route: APIRoute) -> str:
    """OpenAPI operation ids are the route functions' names (``start_execution``)."""
    return route.name


router = APIRouter(generate_unique_id_function=operation_id)
router.include_router(health.router)
router.include_router(workflows.router)
router.include_router(analysis.router)
router.include_router(executions.router)
router.include_router(stream.router)
router.include_router(forms.router)
router.include_router(node_types.router)
router.include_router(access.router)
router.include_router(admin_audit.router)
router.include_router(credentials.router)
router.include_router(limits.router)
