"""A node's ``auth`` on its request: bearer, basic, or an API key in a header or the query.

Values are rendered apart from the rest of the config: a value that does not render is reported
without being shown, and the header names set here are the ones a redirect to another origin
drops. Stored credentials (``{"type": "credential"}``) are part of the contract but the service
does not store any yet: such a node fails saying so instead of calling without auth.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from app.domain.http_nodes import ApiKeyAuth, BasicAuth, BearerAuth, CredentialAuth
from app.engine.run.context import NodeContext
from app.errors import NodeConfigError

Auth = BearerAuth | BasicAuth | ApiKeyAuth | CredentialAuth


@dataclass(frozen=True, slots=True)
class Applied:
    """What the auth added: headers (secret), query parameters (secret)."""

    headers: dict[str, str]
    params: tuple[tuple[str, str], ...] = ()


async def rendered(ctx: NodeContext) -> Auth | None:
    """The node's ``auth`` with its templates rendered; a bad value is reported without it."""
    try:
        value: Auth | None = await ctx.render("auth")
    except NodeConfigError:
        raise NodeConfigError(
            "config field 'auth' rendered to a value that is not valid (values are not shown: "
            "they may hold secrets)"
        ) from None
    return value


def apply(auth: Auth | None) -> Applied:
    """The headers and query parameters that carry ``auth``."""
    if auth is None:
        return Applied({})
    if isinstance(auth, BearerAuth):
        return Applied({"Authorization": f"Bearer {_line(auth.token)}"})
    if isinstance(auth, BasicAuth):
        pair = base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode("ascii")
        return Applied({"Authorization": f"Basic {pair}"})
    if isinstance(auth, ApiKeyAuth):
        if auth.in_ == "header":
            return Applied({_line(auth.name): _line(auth.value)})
        return Applied({}, ((auth.name, auth.value),))
    raise NodeConfigError(
        f"auth type 'credential' ({auth.name!r}): stored credentials are not available yet; "
        "give the secret as bearer, basic or api_key auth (from the run's inputs)"
    )


def _line(value: str) -> str:
    if any(c in value for c in "\r\n\0"):
        raise NodeConfigError("auth: a value holds a line break or NUL (not shown)")
    return value
