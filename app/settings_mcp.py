"""The settings of the ``mcp`` node: named MCP servers and how long connecting may take.

A mixin of :class:`app.settings.Settings`. Header values of a named server (tokens, API keys)
are secrets: they print as ``**********`` and go nowhere but that server.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from app.domain.mcp_nodes import SERVER_NAME_PATTERN
from app.domain.urls import check_http_url

DEFAULT_MCP_CONNECT_TIMEOUT_S = 5.0  # seconds
_NAME = re.compile(SERVER_NAME_PATTERN)


class McpServerSpec(BaseModel):
    """One named MCP server: its streamable-HTTP URL and the headers every request carries."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2048)
    headers: dict[str, SecretStr] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        check_http_url(url)
        return url


class McpSettings(BaseModel):
    """Fields mixed into Settings (env prefix ``OXIFY_``)."""

    mcp_servers: dict[str, McpServerSpec] = Field(
        default_factory=dict,
        description='Named MCP servers, JSON: {"name": {"url": "https://…/mcp", "headers": '
        '{"Authorization": "Bearer …"}}}; an mcp node\'s `server` may name one.',
    )
    mcp_connect_timeout_s: float = Field(
        default=DEFAULT_MCP_CONNECT_TIMEOUT_S,
        gt=0,
        le=300,
        description="Seconds opening a session with an MCP server (connect and handshake) may "
        "take; an unreachable server fails the node after this long.",
    )

    @field_validator("mcp_servers")
    @classmethod
    def _server_names(cls, servers: dict[str, McpServerSpec]) -> dict[str, McpServerSpec]:
        for name in servers:
            if not _NAME.fullmatch(name):
                raise ValueError(f"MCP server name {name!r}: use letters, digits, '_', '.', '-'")
        return servers
