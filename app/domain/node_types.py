"""Node types: the config schema of every core type and what each can branch to (the base
classes are in :mod:`app.domain.node_config`; human steps in :mod:`app.domain.human`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, StringConstraints, model_validator
from pydantic.config import JsonDict

from app.domain.ai_nodes import LlmConfig
from app.domain.code_nodes import CodeConfig
from app.domain.human import ApprovalConfig, FormConfig
from app.domain.node_config import ExpressionStr, NodeConfig, NodeType, NodeTypes, TemplateStr
from app.domain.retrieval_nodes import IndexConfig, RetrieverConfig
from app.domain.workflow import MAX_VERSION, NODE_ID_PATTERN, GraphSpec

__all__ = [
    "CORE_NODE_TYPES",
    "ExpressionStr",
    "NodeConfig",
    "NodeType",
    "NodeTypes",
    "TemplateStr",
]

DEFAULT_MAX_ITERATIONS = 1000


class StartConfig(NodeConfig):
    pass


class EndConfig(NodeConfig):
    outputs: dict[str, Any] | None = None


class TransformConfig(NodeConfig):
    value: Any


class SetVarConfig(NodeConfig):
    static = frozenset({"name"})
    name: str = Field(pattern=NODE_ID_PATTERN)
    value: Any


class IfConfig(NodeConfig):
    expressions = frozenset({"condition"})
    condition: ExpressionStr

    def branches(self) -> frozenset[str]:
        return frozenset({"true", "false"})


class SwitchConfig(NodeConfig):
    expressions = frozenset({"value"})
    static = frozenset({"cases"})
    value: ExpressionStr
    cases: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        min_length=1,
        max_length=256,
        json_schema_extra={"uniqueItems": True, "not": {"contains": {"const": "default"}}},
    )

    @model_validator(mode="after")
    def _distinct_cases(self) -> SwitchConfig:
        if len(set(self.cases)) != len(self.cases):
            raise ValueError("cases must be distinct")
        if "default" in self.cases:
            raise ValueError("'default' is the fallback branch and cannot be a case")
        return self

    def branches(self) -> frozenset[str]:
        return frozenset({*self.cases, "default"})


class DelayConfig(NodeConfig):
    seconds: Annotated[float, Field(ge=0, le=31_536_000)] | TemplateStr


class FailConfig(NodeConfig):
    message: str = Field(min_length=1, max_length=10_000)


class ForeachConfig(NodeConfig):
    graphs = frozenset({"body"})
    items: Any = Field(description="Template (or literal list) giving the items.")
    body: GraphSpec
    concurrency: Annotated[int, Field(ge=1, le=1000)] | TemplateStr = 1
    max_iterations: int = Field(default=DEFAULT_MAX_ITERATIONS, ge=1, le=1_000_000)

    def bindings(self, field: str) -> frozenset[str]:
        return frozenset({"item", "index"}) if field == "body" else frozenset()


class WhileConfig(NodeConfig):
    expressions = frozenset({"condition"})
    graphs = frozenset({"body"})
    condition: ExpressionStr
    body: GraphSpec
    max_iterations: int = Field(default=DEFAULT_MAX_ITERATIONS, ge=1, le=1_000_000)

    def bindings(self, field: str) -> frozenset[str]:
        return frozenset({"index", "last"}) if field in ("condition", "body") else frozenset()


class RepeatConfig(NodeConfig):
    graphs = frozenset({"body"})
    count: Annotated[int, Field(ge=0, le=1_000_000)] | TemplateStr
    body: GraphSpec
    max_iterations: int = Field(default=DEFAULT_MAX_ITERATIONS, ge=1, le=1_000_000)

    def bindings(self, field: str) -> frozenset[str]:
        return frozenset({"index"}) if field == "body" else frozenset()


class TryConfig(NodeConfig):
    graphs = frozenset({"try", "catch", "finally"})
    static = frozenset({"error_var"})
    try_: GraphSpec = Field(alias="try")
    catch: GraphSpec | None = None
    finally_: GraphSpec | None = Field(default=None, alias="finally")
    error_var: str = Field(default="error", pattern=NODE_ID_PATTERN)
    rethrow: bool = False

    def bindings(self, field: str) -> frozenset[str]:
        return frozenset({self.error_var}) if field in self.graphs else frozenset()


class InlineWorkflow(GraphSpec):
    outputs: dict[str, Any] | None = None


_WORKFLOW_ID_GIVEN: JsonDict = {
    "required": ["workflow_id"],
    "properties": {"workflow_id": {"type": "string"}},
}
_GRAPH_GIVEN: JsonDict = {"required": ["graph"], "properties": {"graph": {"type": "object"}}}
_VERSION_GIVEN: JsonDict = {"required": ["version"], "properties": {"version": {"type": "integer"}}}


class SubworkflowConfig(NodeConfig):
    """Either ``workflow_id`` (with an optional ``version``) or an inline ``graph``; ``null``
    counts as not given, in the schema as in the validator."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [_WORKFLOW_ID_GIVEN, _GRAPH_GIVEN],
            "if": _VERSION_GIVEN,
            "then": _WORKFLOW_ID_GIVEN,
        }
    )
    graphs = frozenset({"graph"})
    static = frozenset({"workflow_id", "version"})
    isolated = frozenset({"graph"})
    workflow_id: str | None = Field(default=None, min_length=1, max_length=200)
    version: int | None = Field(default=None, ge=1, le=MAX_VERSION)
    graph: InlineWorkflow | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SubworkflowConfig:
        if (self.workflow_id is None) == (self.graph is None):
            raise ValueError("give exactly one of 'workflow_id' or 'graph'")
        if self.version is not None and self.workflow_id is None:
            raise ValueError("'version' needs 'workflow_id'")
        return self

    def bindings(self, field: str) -> frozenset[str]:
        return frozenset({"outputs"}) if field == "outputs" else frozenset()


HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
HTTP_DEFAULT_TIMEOUT_S = 30.0  # seconds
HTTP_MAX_TIMEOUT_S = 600.0  # seconds
HTTP_DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024  # bytes (10 MiB)
HTTP_MAX_RESPONSE_BYTES = 100 * 1024 * 1024  # bytes: the most a document may allow
HTTP_DEFAULT_EXPECT_STATUS = "200-299"

HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"  # an RFC 9110 token
HeaderName = Annotated[str, StringConstraints(pattern=HEADER_NAME_PATTERN, max_length=256)]

HttpScalar = str | int | float | bool | None
"""A header or query value: numbers and booleans are sent as text, ``null`` leaves it out."""

StatusCode = Annotated[int, Field(ge=100, le=599)]
StatusRange = Annotated[str, StringConstraints(pattern=r"^\s*(?:[1-5]xx|\d{3}\s*-\s*\d{3})\s*$")]
"""``"2xx"`` or an inclusive range such as ``"200-299"``."""


def _default_expect_status() -> list[int | str]:
    return [HTTP_DEFAULT_EXPECT_STATUS]


class HttpConfig(NodeConfig):
    """Config of the ``http`` node: one request, its response as the node's output.

    ``url``, ``headers``, ``query``, ``json`` and ``body`` hold templates; ``timeout_s`` may be a
    lone template. ``json`` and ``body`` exclude each other. A ``null`` header or query value
    leaves that header or parameter out.
    """

    # Later issues add fields here: `auth` (bearer/basic/API key read from secrets), `rate_limit`,
    # `circuit_breaker`, and a deployment-wide network policy (allowed hosts, no private
    # addresses, redirects) enforced by the executor before the request is sent.
    model_config = ConfigDict(json_schema_extra={"not": {"required": ["json", "body"]}})
    static = frozenset(
        {"method", "expect_status", "response", "max_response_bytes", "idempotency_key"}
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


def check_http_url(url: str) -> None:
    """Raise ValueError unless ``url`` is an absolute http(s) URL with a host.

    The message never repeats the URL: it may carry credentials or secret query parameters.
    """
    try:
        parts = urlsplit(url)
        _ = parts.port  # a malformed port raises here
    except ValueError:
        raise ValueError("url is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https"):
        shown = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise ValueError(f"url must be an absolute http:// or https:// URL (it has {shown})")
    if not parts.hostname:
        raise ValueError("url has no host")


CORE_NODE_TYPES = NodeTypes(
    {
        t.name: t
        for t in (
            NodeType("start", StartConfig, "Entry point; outputs the run's inputs."),
            NodeType("end", EndConfig, "Exit point; outputs its mapping, else its inputs."),
            NodeType("transform", TransformConfig, "Outputs `value` with templates resolved."),
            NodeType("set_var", SetVarConfig, "Sets vars.<name> for later nodes."),
            NodeType("if", IfConfig, "Branches `true` or `false` on a condition."),
            NodeType("switch", SwitchConfig, "Branches to the matching case or `default`."),
            NodeType("delay", DelayConfig, "Sleeps for `seconds`."),
            NodeType("fail", FailConfig, "Always fails with `message`."),
            NodeType("foreach", ForeachConfig, "Runs `body` once per item."),
            NodeType("while", WhileConfig, "Runs `body` while `condition` holds."),
            NodeType("repeat", RepeatConfig, "Runs `body` `count` times."),
            NodeType("try", TryConfig, "Runs `try`; on error `catch`; always `finally`."),
            NodeType("subworkflow", SubworkflowConfig, "Runs another workflow as one node."),
            NodeType("http", HttpConfig, "Sends an HTTP request; outputs status, headers, body."),
            NodeType("approval", ApprovalConfig, "Waits for people to approve or reject."),
            NodeType("form", FormConfig, "Waits for a person to fill in `fields`."),
            NodeType("llm", LlmConfig, "Calls a language model; outputs its answer and usage."),
            NodeType("index", IndexConfig, "Chunks, embeds and upserts documents into a store."),
            NodeType("retriever", RetrieverConfig, "Finds the chunks best matching `query`."),
            NodeType("code", CodeConfig, "Runs an expression, Python or WebAssembly on inputs."),
        )
    }
)
