"""Request bodies and answer shapes of the API's own (the services' models cover the rest)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, RootModel

from app.domain import views as models
from app.domain.run import RunConfig

PROBLEM_MEDIA_TYPE = "application/problem+json"


class WorkflowDocument(RootModel[dict[str, Any]]):
    """A workflow document, taken as a raw JSON object: the workflow service validates it and
    reports every problem with a pointer into the document. OpenAPI documents it with the full
    workflow JSON Schema (see ``app.api.openapi``)."""


class StartExecution(BaseModel):
    """Body of `POST /v1/workflows/{id}/executions`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    inputs: dict[str, Any] = Field(
        default_factory=dict, description="Run inputs, validated against the workflow's schema."
    )
    config: RunConfig = Field(default_factory=RunConfig, description="Run options.")
    by: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Who starts the run: approvals refuse this person unless they allow "
        "self-approval. With credentials it is the caller (a token's subject, a key's name): "
        "leave it out, or give the same (another answers 422 from_credentials).",
    )

    def config_dict(self) -> dict[str, Any]:
        """The options the client gave (defaults left out, so replays hash the same)."""
        return self.config.model_dump(mode="json", exclude_unset=True)


class EstimateRequest(BaseModel):
    """Body of `POST /v1/workflows/{id}/estimate` (optional)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    inputs: dict[str, Any] | None = Field(
        default=None,
        description="Run inputs that size loops: a foreach's `items` or a repeat's `count` "
        "written as a whole `{{ inputs.x }}` is read from here.",
    )


class SubmitForm(BaseModel):
    """Body of `POST /v1/forms/{id}/submit`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    values: dict[str, Any] = Field(description="The answers, keyed by field.")
    by: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Who answers. With credentials it is the caller (a token's subject, a key's "
        "name): leave it out, or give the same (another answers 422 from_credentials).",
    )
    comment: str | None = Field(default=None, max_length=10_000)
    groups: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="Groups the person belongs to, for approvers named `group:<name>`. With "
        "credentials they come from a token's groups claim (OXIFY_OIDC_GROUPS_CLAIM); giving "
        "them answers 422 from_credentials.",
    )


class CheckpointList(BaseModel):
    items: list[models.CheckpointInfo]


class Status(BaseModel):
    status: str = Field(examples=["ok"])


class ProblemError(BaseModel):
    """One precise complaint: ``loc``/``msg`` as in the contract, plus an RFC 6901 ``pointer``
    into the request body (or the ``parameter`` that was wrong) and a stable ``code``."""

    loc: list[str | int]
    msg: str
    code: str | None = None
    pointer: str | None = None
    parameter: str | None = None


class ProblemDetails(BaseModel):
    """An error answer (RFC 9457, ``application/problem+json``)."""

    type: str = Field(examples=["https://oxify.dev/problems/workflow_not_found"])
    title: str
    status: int
    detail: str | None = None
    code: str = Field(description="Stable error code; match on this, never on the text.")
    errors: list[ProblemError] = Field(default_factory=list)
