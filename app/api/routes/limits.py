"""Rate limits and quotas of a project (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from app.api import guard
from app.api.deps import ServicesDep
from app.api.errors import problems
from app.api.guard import CallerDep, GuardedRoute
from app.auth.scopes import Action
from app.domain.limits import Limits, ProjectLimits
from app.errors import ProjectNotFound

router = APIRouter(tags=["access"], route_class=GuardedRoute)

Project = Annotated[
    str,
    Path(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="A project name."),
]


def _admin_of(caller: CallerDep, project: str) -> None:
    """Another project is not found, as its workflows and runs are not (404, never 403)."""
    if not caller.sees(project):
        raise ProjectNotFound(f"no project {project!r}")


@router.get(
    "/v1/admin/projects/{project}/limits",
    summary="The rate limits and quotas that apply to a project",
    description="Its own limits, the service's defaults (`OXIFY_DEFAULT_*`) filling in what it "
    "leaves out; null: unlimited.",
    response_model=ProjectLimits,
    responses=problems(401, 403, 404, 422),
    openapi_extra=guard.needs(Action.ADMIN),
)
async def get_project_limits(
    project: Project, caller: CallerDep, services: ServicesDep
) -> ProjectLimits:
    _admin_of(caller, project)
    return await services.limits.project_limits(project)


@router.put(
    "/v1/admin/projects/{project}/limits",
    summary="Set a project's rate limits and quotas (replacing them)",
    description="A limit left out or null falls back to the default (`OXIFY_DEFAULT_*`). Every "
    "replica applies them within `OXIFY_LIMITS_REFRESH_S` seconds (5). Answers the limits "
    "that now apply.",
    response_model=ProjectLimits,
    responses=problems(401, 403, 404, 422),
    openapi_extra=guard.needs(Action.ADMIN),
)
async def put_project_limits(
    project: Project, body: Limits, caller: CallerDep, services: ServicesDep
) -> ProjectLimits:
    _admin_of(caller, project)
    return await services.limits.set_project_limits(project, body)
