"""A node's ``auth`` on its request: bearer, basic, an API key in a header or the query, or a
stored credential by name.

Values are rendered apart from the rest of the config: a value that does not render is reported
without being shown, and the header names set here are the ones a redirect to another origin
drops. A stored credential is resolved here, after rendering (only its *name* is a template),
so its value never passes through a template, an event or a checkpoint; the values it puts on
the request are listed in :attr:`Applied.secrets` for the caller to scrub from errors and
outputs (a server may echo the header it was sent).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from app import redaction
from app.auth.credentials import Resolved
from app.domain.http_nodes import ApiKeyAuth, BasicAuth, BearerAuth, CredentialAuth
from app.engine.run.context import NodeContext
from app.errors import NodeConfigError, NodeError
from app.nodes import credentials
from app.nodes.resources import NodeResources

Auth = BearerAuth | BasicAuth | ApiKeyAuth | CredentialAuth


@dataclass(frozen=True, slots=True)
class Applied:
    """What the auth added: headers (secret), query parameters (secret), and the stored
    credential's values as sent, to scrub from whatever comes back."""

    headers: dict[str, str]
    params: tuple[tuple[str, str], ...] = ()
    secrets: tuple[str, ...] = ()

    def shown(self, value: Any) -> Any:
        """``value`` (an output, a tool's result) with the stored credential's values
        scrubbed."""
        return redaction.scrub_all(value, self.secrets)

    @contextmanager
    def scrubbing(self) -> Iterator[None]:
        """Node errors raised inside leave with the stored credential's values scrubbed from
        their message and details (a server's answer may quote the header it was sent)."""
        try:
            yield
        except NodeError as exc:
            if self.secrets:
                exc.message = redaction.scrub(exc.message, self.secrets)
                exc.args = (exc.message,)
                exc.details = self.shown(exc.details)
            raise


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


async def applied(resources: NodeResources, auth: Auth | None) -> Applied:
    """The headers and query parameters that carry ``auth`` (rendered), a stored credential
    resolved in the run's project."""
    if isinstance(auth, CredentialAuth):
        return stored(await credentials.resolve(resources, auth.name))
    return apply(auth)


def apply(auth: BearerAuth | BasicAuth | ApiKeyAuth | None) -> Applied:
    """The headers and query parameters that carry ``auth`` given in the document."""
    if auth is None:
        return Applied({})
    if isinstance(auth, BearerAuth):
        return _bearer(auth.token)
    if isinstance(auth, BasicAuth):
        return _basic(auth.username, auth.password)
    return _api_key(auth.in_, auth.name, auth.value)


def stored(credential: Resolved) -> Applied:
    """A stored credential on a request, by its kind; its values listed as secrets."""
    value = credential.value
    if credential.kind == "bearer":
        made = _bearer(value)
    elif credential.kind == "basic":
        made = _basic(credential.params.get("username", ""), value)
    elif credential.kind == "api_key":
        where = "query" if credential.params.get("in") == "query" else "header"
        made = _api_key(where, credential.params.get("key_name", ""), value)
    else:
        raise NodeConfigError(
            f"credential {credential.name!r} is of kind {credential.kind!r}, which a request "
            "cannot carry: store it as bearer, basic or api_key"
        )
    secrets = (value, *made.secrets)
    redaction.remember(*secrets)
    return Applied(made.headers, made.params, secrets)


def _bearer(token: str) -> Applied:
    return Applied({"Authorization": f"Bearer {_line(token)}"})


def _basic(username: str, password: str) -> Applied:
    pair = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return Applied({"Authorization": f"Basic {pair}"}, secrets=(pair,))


def _api_key(where: str, name: str, value: str) -> Applied:
    if where == "header":
        return Applied({_line(name): _line(value)})
    return Applied({}, ((name, value),))


def _line(value: str) -> str:
    if any(c in value for c in "\r\n\0"):
        raise NodeConfigError("auth: a value holds a line break or NUL (not shown)")
    return value
