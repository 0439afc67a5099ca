"""Who am I, stream tickets, and API keys (admin)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from app.api import guard
from app.api.deps import ExecutionsDep, ServicesDep
from app.api.errors import problems
from app.api.guard import CallerDep, GuardedRoute
from app.api.routes.params import KeyId
from app.auth.scopes import Action
from app.domain.access import (
    ApiKey,
    CreateApiKey,
    CreatedApiKey,
    RotateApiKey,
    StreamTicket,
    TicketRequest,
    Whoami,
)

router = APIRouter(tags=["access"], route_class=GuardedRoute)


@router.get(
    "/v1/auth/whoami",
    summary="The caller: key or subject, scopes, project",
    response_model=Whoami,
    responses=problems(401),
    openapi_extra=guard.needs(Action.AUTHENTICATED),
)
async def whoami(caller: CallerDep) -> Whoami:
    return Whoami(
        key_id=caller.key_id,
        subject=caller.subject,
        name=caller.name,
        scopes=sorted(caller.scopes),
        project=caller.project,
        authenticated=not caller.anonymous,
    )


@router.post(
    "/v1/auth/tickets",
    summary="A single-use ticket to open one run's event stream from a browser",
    description="EventSource and browser WebSockets cannot send `Authorization`: pass the "
    "ticket as `?ticket=` on `/v1/executions/{id}/events` or `/v1/executions/{id}/ws`. It "
    "works once, within 60 s, for that run only.",
    status_code=status.HTTP_201_CREATED,
    response_model=StreamTicket,
    responses=problems(401, 403, 404, 422),
    openapi_extra=guard.needs(Action.READ_RUNS),
)
async def create_ticket(
    body: TicketRequest, caller: CallerDep, services: ServicesDep, executions: ExecutionsDep
) -> StreamTicket:
    await executions.get(body.execution_id)  # 404 for a run the caller cannot see
    ticket, expires_at = await services.tickets.issue(caller, body.execution_id)
    return StreamTicket(ticket=ticket, execution_id=body.execution_id, expires_at=expires_at)


@router.post(
    "/v1/admin/keys",
    summary="Create an API key (its secret is shown once, in this answer)",
    status_code=status.HTTP_201_CREATED,
    response_model=CreatedApiKey,
    responses=problems(401, 403, 422, 503),
    openapi_extra=guard.needs(Action.ADMIN),
)
async def create_key(body: CreateApiKey, caller: CallerDep, services: ServicesDep) -> CreatedApiKey:
    project = None if body.all_projects else body.project or caller.project or "default"
    return await services.keys.create(
        name=body.name,
        scopes=body.scopes,
        project=project,
        expires_in_days=body.expires_in_days,
        limits=body.limits,
        by=caller,
    )


@router.get(
    "/v1/admin/keys",
    summary="List API keys (never their secrets)",
    response_model=list[ApiKey],
    responses=problems(401, 403),
    openapi_extra=guard.needs(Action.ADMIN),
)
async def list_keys(caller: CallerDep, services: ServicesDep) -> list[ApiKey]:
    return await services.keys.listed(by=caller)


@router.delete(
    "/v1/admin/keys/{key_id}",
    summary="Revoke an API key (every replica refuses it within a second)",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problems(401, 403, 404, 422),
    openapi_extra=guard.needs(Action.ADMIN),
)
async def revoke_key(key_id: KeyId, caller: CallerDep, services: ServicesDep) -> Response:
    await services.keys.revoke(key_id, by=caller)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/v1/admin/keys/{key_id}/rotate",
    summary="Replace an API key; the old one keeps working for the grace period",
    status_code=status.HTTP_201_CREATED,
    response_model=CreatedApiKey,
    responses=problems(401, 403, 404, 422, 503),
    openapi_extra=guard.needs(Action.ADMIN),
)
async def rotate_key(
    key_id: KeyId, caller: CallerDep, services: ServicesDep, body: RotateApiKey | None = None
) -> CreatedApiKey:
    grace_s = (body or RotateApiKey()).grace_s
    return await services.keys.rotate(key_id, grace_s=grace_s, by=caller)
