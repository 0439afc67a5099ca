"""Dependencies: the services the composition root started (``app.state.services``).

They are ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread, two thread
hops per request for what is an attribute read."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.api.errors import ApiProblem
from app.domain.views import NodeTypeList
from app.services.audit import AuditService
from app.services.container import Services
from app.services.credentials import CredentialService
from app.services.executions import ExecutionService
from app.services.forms import FormService
from app.services.workflows import WorkflowService


async def get_services(request: Request) -> Services:
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None:
        raise ApiProblem(503, "not_ready", "The service is starting or stopping.")
    return services


async def get_workflows(services: Annotated[Services, Depends(get_services)]) -> WorkflowService:
    return services.workflows


async def get_executions(services: Annotated[Services, Depends(get_services)]) -> ExecutionService:
    return services.executions


async def get_forms(services: Annotated[Services, Depends(get_services)]) -> FormService:
    return services.forms


async def get_audit(services: Annotated[Services, Depends(get_services)]) -> AuditService:
    return services.audit


async def get_credentials(
    services: Annotated[Services, Depends(get_services)],
) -> CredentialService:
    return services.credentials


async def get_node_types(services: Annotated[Services, Depends(get_services)]) -> NodeTypeList:
    return services.node_types


ServicesDep = Annotated[Services, Depends(get_services)]
FormsDep = Annotated[FormService, Depends(get_forms)]
WorkflowsDep = Annotated[WorkflowService, Depends(get_workflows)]
ExecutionsDep = Annotated[ExecutionService, Depends(get_executions)]
CredentialsDep = Annotated[CredentialService, Depends(get_credentials)]
NodeTypesDep = Annotated[NodeTypeList, Depends(get_node_types)]
AuditDep = Annotated[AuditService, Depends(get_audit)]
