"""The node types this deployment knows: built-in ones and those plug-ins added."""

from __future__ import annotations

from fastapi import APIRouter

from app.api import guard
from app.api.deps import NodeTypesDep
from app.api.errors import problems
from app.api.guard import GuardedRoute
from app.auth.scopes import Action
from app.domain import views as models

router = APIRouter(tags=["node types"], route_class=GuardedRoute)


@router.get(
    "/v1/node-types",
    summary="List the node types, with their source, version and config schema",
    response_model=models.NodeTypeList,
    responses=problems(),
    openapi_extra=guard.needs(Action.AUTHENTICATED),
)
async def list_node_types(node_types: NodeTypesDep) -> models.NodeTypeList:
    return node_types
