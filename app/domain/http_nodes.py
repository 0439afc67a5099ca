"""Config of the nodes that call HTTP APIs: ``http`` and ``graphql``, and the ``auth`` they share.

Names follow the API contract (the ``http`` node additions, "AI, tool and code node types").
Auth values are templates like every other string; executors render them apart from the rest
so that a bad value is reported without being shown.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from app.domain.node_config import NodeConfig, TemplateStr
from app.domain.urls import check_http_url

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
HTTP_DEFAULT_TIMEOUT_S = 30.0  # seconds
HTTP_MAX_TIMEOUT_S = 600.0  # seconds
HTTP_DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024  # bytes (10 MiB)
HTTP_MAX_RESPONSE_BYTES = 100 * 1024 * 1024  # bytes: the most a document may allow
HTTP_DEFAULT_EXPECT_STATUS = "200-299"
MAX_REDIRECTS = 5  # hops followed before the node fails
MAX_SECRET_CHARS = 16_384  # of a token, password or key template

HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"  # an RFC 9110 token
HeaderName = Annotated[str, StringConstraints(pattern=HEADER_NAME_PATTERN, max_length=256)]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SECRET_CHARS)]

HttpScalar = str | int | float | bool | None
"""A header or query value: numbers and booleans are sent as text, ``null`` leaves it out."""

StatusCode = Annotated[int, Field(ge=100, le=599)]
StatusRange = Annotated[str, StringConstraints(pattern=r"^\s*(?:[1-5]xx|\d{3}\s*-\s*\d{3})\s*$")]
"""``"2xx"`` or an inclusive range such as ``"200-299"``."""


class BearerAuth(NodeConfig):
    """``Authorization: Bearer <token>``."""

    type: Literal["bearer"]
    token: Secret


class BasicAuth(NodeConfig):
    """``Authorization: Basic base64(username:password)``."""

    type: Literal["basic"]
    username: Annotated[str, StringConstraints(max_length=MAX_SECRET_CHARS)]
    password: Annotated[str, StringConstraints(max_length=MAX_SECRET_CHARS)]


class ApiKeyAuth(NodeConfig):
    """A key sent as the header or query parameter ``name``."""

    type: Literal["api_key"]
    in_: Literal["header", "query"] = Field(alias="in")
    name: str = Field(min_length=1, max_length=256)
    value: Secret

    @model_validator(mode="after")
    def _a_header_name(self) -> ApiKeyAuth:
        literal = "{{" not in self.name
        if self.in_ == "header" and literal and not re.fullmatch(HEADER_NAME_PATTERN, self.name):
            raise ValueError("name must be a header name (letters, digits, -, _ …)")
        return self


class CredentialAuth(NodeConfig):
    """A stored credential (`/v1/credentials`) by name, resolved in the run's project when
    the request is made: sent as its kind says (bearer, basic or api_key), its value never
    passing through a template, an event or the node's output."""

    type: Literal["credential"]
    name: str = Field(min_length=1, max_length=200)


HttpAuth = Annotated[
    BearerAuth | BasicAuth | ApiKeyAuth | CredentialAuth, Field(discriminator="type")
]


def _default_expect_status() -> list[int | str]:
    return [HTTP_DEFAULT_EXPECT_STATUS]


class HttpConfig(NodeConfig):
    """Config of the ``http`` node: one request, its response as the node's output.

    ``url``, ``headers``, ``query``, ``json``, ``body`` and ``auth``'s values hold templates;
    ``timeout_s`` may be a lone template. ``json`` and ``body`` exclude each other. A ``null``
    header or query value leaves that header or parameter out.
    """

    model_config = ConfigDict(json_schema_extra={"not": {"required": ["json", "body"]}})
    static = frozenset(
        {
            "method",
            "expect_status",
            "response",
            "max_response_bytes",
            "idempotency_key",
            "follow_redirects",
        }
    )

    method: HttpMethod = "GET"
    url: str = Field(min_length=1, max_length=8192)
    headers: dict[HeaderName, HttpScalar] = Field(
        default_factory=dict,
        json_schema_extra={"propertyNames": {"pattern": HEADER_NAME_PATTERN, "maxLength": 256}},
    )
    query: dict[str, HttpScalar | list[HttpScalar]] = Field(default_factory=dict)
    json_: Any = Field(default=None, alias="json")
    body: str | None = None
    auth: HttpAuth | None = None
    timeout_s: Annotated[float, Field(gt=0, le=HTTP_MAX_TIMEOUT_S)] | TemplateStr = (
        HTTP_DEFAULT_TIMEOUT_S
    )
    expect_status: list[StatusCode | StatusRange] = Field(
        default_factory=_default_expect_status,
        min_length=1,
        max_length=100,
    )
    response: Literal["auto", "json", "text"] = "auto"
    max_response_bytes: int = Field(
        default=HTTP_DEFAULT_MAX_RESPONSE_BYTES, ge=1, le=HTTP_MAX_RESPONSE_BYTES
    )
    follow_redirects: bool = Field(
        default=True, description=f"Follow up to {MAX_REDIRECTS} redirects."
    )
    idempotency_key: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> HttpConfig:
        if {"json_", "body"} <= self.model_fields_set:
            raise ValueError("give either 'json' or 'body', not both")
        if "{{" not in self.url:
            check_http_url(self.url)
        if self.idempotency_key and any(k.lower() == "idempotency-key" for k in self.headers):
            raise ValueError("'idempotency_key: true' sets the Idempotency-Key header itself")
        self.status_ranges()  # every range in order
        return self

    @property
    def sends_json(self) -> bool:
        """Whether the document gave ``json`` (even ``null``): the request body is JSON."""
        return "json_" in self.model_fields_set

    def status_ranges(self) -> list[tuple[int, int]]:
        """``expect_status`` as inclusive ``(low, high)`` pairs; a reversed range is an error."""
        ranges: list[tuple[int, int]] = []
        for item in self.expect_status:
            if isinstance(item, int):
                ranges.append((item, item))
                continue
            text = item.strip()
            if text.endswith("xx"):
                low = int(text[0]) * 100
                ranges.append((low, low + 99))
                continue
            first, _, last = text.partition("-")
            low, high = int(first), int(last)
            if not 100 <= low <= high <= 599:
                raise ValueError(f"status range {item!r} must run upwards within 100-599")
            ranges.append((low, high))
        return ranges

    def expects(self, status: int) -> bool:
        """Whether a response with ``status`` counts as success."""
        return any(low <= status <= high for low, high in self.status_ranges())


class GraphqlConfig(NodeConfig):
    """Config of the ``graphql`` node: one operation POSTed as JSON; outputs the answer's
    ``data``. ``url``, ``query``, ``variables``, ``headers`` and ``auth``'s values are
    templates."""

    static = frozenset({"operation_name"})

    url: str = Field(min_length=1, max_length=8192)
    query: str = Field(min_length=1, max_length=1_000_000)
    variables: dict[str, Any] = Field(default_factory=dict)
    operation_name: str | None = Field(
        default=None, pattern=r"^[_A-Za-z][_0-9A-Za-z]*$", max_length=256
    )
    headers: dict[HeaderName, HttpScalar] = Field(
        default_factory=dict,
        json_schema_extra={"propertyNames": {"pattern": HEADER_NAME_PATTERN, "maxLength": 256}},
    )
    auth: HttpAuth | None = None
    timeout_s: Annotated[float, Field(gt=0, le=HTTP_MAX_TIMEOUT_S)] | TemplateStr = (
        HTTP_DEFAULT_TIMEOUT_S
    )

    @model_validator(mode="after")
    def _an_http_url(self) -> GraphqlConfig:
        if "{{" not in self.url:
            check_http_url(self.url)
        return self
