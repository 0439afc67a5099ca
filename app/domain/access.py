"""Read models and request bodies of access control: API keys, the caller, stream tickets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.domain.limits import Limits

SCOPES_DESCRIPTION = (
    "`viewer` reads workflows, runs, events and forms; `runner` also writes workflows and "
    "starts, pauses, resumes, cancels and retries runs; `reviewer` reads runs and forms and "
    "answers forms; `admin` may do everything, including managing keys, credentials and the "
    "audit log."
)
ScopeName = Annotated[str, StringConstraints(pattern=r"^(viewer|runner|reviewer|admin)$")]
ProjectName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
]
MAX_KEY_DAYS = 3650  # ten years: a longer-lived key is a key nobody rotates


class ApiKey(BaseModel):
    """An API key as listed: never its secret."""

    id: str = Field(description="The key id: the part after `oxify_`, safe to log and share.")
    name: str
    scopes: list[str] = Field(description=SCOPES_DESCRIPTION)
    project: str | None = Field(description="The one project the key sees; null: every project.")
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(description="Updated at most once a minute.")
    replaced_by: str | None = Field(description="The key a rotation made to replace this one.")
    limits: Limits | None = Field(
        default=None, description="The key's own rate limits and quotas (its project's apply too)."
    )


class CreatedApiKey(ApiKey):
    """A new key: ``key`` is shown this once and cannot be read again."""

    key: str


class CreateApiKey(BaseModel):
    """Body of `POST /v1/admin/keys`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=200)
    scopes: list[ScopeName] = Field(min_length=1, max_length=4, description=SCOPES_DESCRIPTION)
    project: ProjectName | None = Field(
        default=None,
        description="The project the key is bound to; omitted: the caller's project, or "
        "`default`. An admin key may leave it null to see every project.",
    )
    all_projects: bool = Field(
        default=False, description="An admin key for every project (only with scope `admin`)."
    )
    expires_in_days: int | None = Field(default=None, ge=1, le=MAX_KEY_DAYS)
    limits: Limits | None = Field(
        default=None, description="Rate limits and quotas of this key alone; omitted: none."
    )


class RotateApiKey(BaseModel):
    """Body of `POST /v1/admin/keys/{id}/rotate` (optional)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    grace_s: int = Field(
        default=3600,
        ge=0,
        le=30 * 86400,
        description="Seconds the old key keeps working, so clients can switch.",
    )


class Whoami(BaseModel):
    """The caller, as the service sees it."""

    key_id: str | None = None
    subject: str | None = None
    name: str | None = None
    scopes: list[str]
    project: str | None = Field(description="The one project the caller sees; null: every one.")
    authenticated: bool = Field(
        description="False while the service runs without authentication (no key exists yet)."
    )


class TicketRequest(BaseModel):
    """Body of `POST /v1/auth/tickets`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    execution_id: str = Field(min_length=1, max_length=64)


class StreamTicket(BaseModel):
    """A single-use ticket: `?ticket=` on this run's SSE or WebSocket stream, once, before
    ``expires_at``."""

    ticket: str
    execution_id: str
    expires_at: datetime
