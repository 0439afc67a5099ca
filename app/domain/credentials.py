"""Stored credentials as the API takes and shows them: a name, a kind, the secret (taken, never
shown) and what is not secret about it.

Kinds are what nodes need to authenticate: ``bearer`` (``Authorization: Bearer <value>``),
``basic`` (``username`` + the value as password), ``api_key`` (the value in the header or query
parameter ``key_name``), ``secret`` (a bare value, for nodes that take a key of their own).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints

from app.domain.http_nodes import HEADER_NAME_PATTERN, MAX_SECRET_CHARS

Kind = Literal["bearer", "basic", "api_key", "secret"]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$"
PROJECT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
Project = Annotated[str, StringConstraints(pattern=PROJECT_PATTERN)]


class NewCredential(BaseModel):
    """A credential to store; `value` is encrypted at once and never shown again."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="Unique in its project; nodes name it in `auth`.")
    kind: Kind = "bearer"
    value: SecretStr = Field(
        min_length=1, max_length=MAX_SECRET_CHARS, description="The secret (write-only)."
    )
    username: str | None = Field(
        default=None, min_length=1, max_length=MAX_SECRET_CHARS, description="`basic` only."
    )
    in_: Literal["header", "query"] | None = Field(
        default=None, alias="in", description="`api_key` only: where the key goes (header)."
    )
    key_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="`api_key` only: the header or query parameter that carries the key.",
    )
    project: Project | None = Field(
        default=None,
        description="The project it belongs to; default: the caller's project, else `default`.",
    )

    def problems(self) -> list[tuple[str, str]]:
        """(JSON pointer, message) for every field that does not fit the kind."""
        found: list[tuple[str, str]] = []
        if self.kind == "basic" and self.username is None:
            found.append(("/username", "a basic credential needs a username"))
        if self.kind != "basic" and self.username is not None:
            found.append(("/username", "belongs to basic credentials only"))
        if self.kind == "api_key":
            if self.key_name is None:
                found.append(("/key_name", "an api_key credential needs the header or parameter"))
            elif (self.in_ or "header") == "header" and not re.fullmatch(
                HEADER_NAME_PATTERN, self.key_name
            ):
                found.append(("/key_name", "must be a header name (letters, digits, -, _ …)"))
        else:
            found += [
                (f"/{field}", "belongs to api_key credentials only")
                for field, given in (("in", self.in_), ("key_name", self.key_name))
                if given is not None
            ]
        if any(c in self.value.get_secret_value() for c in "\r\n\0"):
            found.append(("/value", "must not hold a line break or NUL (it may become a header)"))
        return found

    def params(self) -> dict[str, str]:
        """What is stored beside the ciphertext (not secret)."""
        if self.kind == "basic" and self.username is not None:
            return {"username": self.username}
        if self.kind == "api_key" and self.key_name is not None:
            return {"in": self.in_ or "header", "key_name": self.key_name}
        return {}


class Credential(BaseModel):
    """A stored credential, without its value (no answer ever holds it)."""

    id: str
    project: str
    name: str
    kind: Kind
    params: dict[str, str] = Field(
        description="What is not secret: `username` (basic), `in` and `key_name` (api_key)."
    )
    created_at: datetime
    updated_at: datetime
