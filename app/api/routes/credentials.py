"""Credentials: store (encrypted), list, read and delete secrets nodes use. No answer ever
holds a value: it goes in once and out only to the node that uses it."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from app.api import guard
from app.api.deps import CredentialsDep
from app.api.errors import problems
from app.api.guard import GuardedRoute
from app.api.routes.params import CredentialId, Cursor, Limit
from app.auth.scopes import Action
from app.domain import views as models
from app.domain.credentials import Credential, NewCredential

router = APIRouter(prefix="/v1/credentials", tags=["credentials"], route_class=GuardedRoute)


@router.post(
    "",
    summary="Store a credential (encrypted; the value is never shown again)",
    description="Refused with 503 `encryption_not_configured` (nothing stored) when the "
    "service has no `OXIFY_SECRET_KEYS`; 409 `credential_exists` when the name is taken in "
    "the project.",
    status_code=status.HTTP_201_CREATED,
    response_model=Credential,
    responses=problems(403, 409, 413, 422, 503),
    openapi_extra=guard.needs(Action.ADMIN),
)
async def create_credential(
    body: NewCredential, credentials: CredentialsDep, response: Response
) -> Credential:
    created = await credentials.create(body)
    response.headers["Location"] = f"/v1/credentials/{created.id}"
    return created


@router.get(
    "",
    summary="List credentials (names, kinds, timestamps; never values)",
    response_model=models.Page[Credential],
    responses=problems(422),
    openapi_extra=guard.needs(Action.ADMIN),
)
async def list_credentials(
    credentials: CredentialsDep, limit: Limit = 50, cursor: Cursor = None
) -> models.Page[Credential]:
    return await credentials.list(limit=limit, cursor=cursor)


@router.get(
    "/{credential_id}",
    summary="Read a credential (without its value)",
    response_model=Credential,
    responses=problems(404, 422),
    openapi_extra=guard.needs(Action.ADMIN),
)
async def get_credential(credential_id: CredentialId, credentials: CredentialsDep) -> Credential:
    return await credentials.get(credential_id)


@router.delete(
    "/{credential_id}",
    summary="Delete a credential (nodes naming it fail from then on)",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problems(404, 422),
    openapi_extra=guard.needs(Action.ADMIN),
)
async def delete_credential(credential_id: CredentialId, credentials: CredentialsDep) -> Response:
    await credentials.delete(credential_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
