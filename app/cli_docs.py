"""``oxify docs``: write ``docs/api.md``, the HTTP API reference a newcomer reads, from the app
(and ``oxify openapi``: write the app's OpenAPI document to ``openapi/openapi.json``).

Routes, parameters, bodies and answers come from the app's OpenAPI document; the workflow
document and every core node type's config from its component schemas; events from
:class:`~app.domain.events.EventType`; error codes from the :class:`~app.errors.OxifyError`
tree and the API's mapping of them. Prose lives in :mod:`app.cli_docs_text`. Writing refuses a
reference that would leave something out (an event type or node type without its text, an error
status of a route without a code), so a change to the API fails the staleness test until the
reference says what changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.routing import BaseRoute, WebSocketRoute

from app import cli_docs_text as text
from app import main
from app.api import errors as api_errors
from app.api import openapi
from app.cli_docs_schema import REF_PREFIX, SchemaWriter, anchor, cell, default
from app.domain.events import EventType
from app.domain.node_types import CORE_NODE_TYPES
from app.errors import NodeError, OxifyError
from app.settings import Settings

DEFAULT_PATH = Path("docs") / "api.md"
OPENAPI_PATH = Path("openapi") / "openapi.json"
METHODS = ("get", "put", "post", "delete", "patch")
DOCUMENT_SCHEMAS = ("WorkflowDocument", "NodeSpec", "EdgeSpec", "GraphSpec", "RetryPolicy")
# Codes a route answers beyond what its documented statuses imply for every route (422:
# request_invalid, 404: <resource>_not_found for its path parameters, 413, 500, 503; 401 and
# 429: the authentication codes and rate_limited).
ROUTE_CODES: dict[tuple[str, str], tuple[str, ...]] = {
    ("POST", "/v1/workflows/validate"): ("workflow_invalid",),
    ("POST", "/v1/workflows"): ("workflow_invalid",),
    ("POST", "/v1/workflows/health"): ("workflow_invalid",),
    ("GET", "/v1/workflows"): ("cursor_invalid",),
    ("PUT", "/v1/workflows/{workflow_id}"): ("workflow_invalid", "workflow_archived"),
    ("POST", "/v1/workflows/{workflow_id}/executions"): (
        "workflow_archived",
        "idempotency_conflict",
        "inputs_invalid",
        "run_config_invalid",
        "queue_full",
        "quota_exceeded",
    ),
    ("GET", "/v1/executions"): ("cursor_invalid",),
    ("DELETE", "/v1/executions/{execution_id}"): ("invalid_state",),
    ("POST", "/v1/executions/{execution_id}/pause"): ("invalid_state",),
    ("POST", "/v1/executions/{execution_id}/resume"): ("invalid_state",),
    ("POST", "/v1/executions/{execution_id}/cancel"): ("invalid_state",),
    ("POST", "/v1/executions/{execution_id}/retry"): ("invalid_state",),
    ("GET", "/v1/executions/{execution_id}/events/log"): ("cursor_invalid",),
    ("GET", "/v1/forms"): ("cursor_invalid",),
    ("POST", "/v1/forms/{form_id}/submit"): (
        "form_closed",
        "form_already_answered",
        "not_an_approver",
        "submission_invalid",
    ),
    ("POST", "/v1/auth/tickets"): ("execution_not_found",),
    ("GET", "/v1/admin/projects/{project}/limits"): ("project_not_found",),
    ("PUT", "/v1/admin/projects/{project}/limits"): ("project_not_found",),
    ("POST", "/v1/admin/keys"): ("key_invalid", "key_pepper_missing"),
    ("POST", "/v1/admin/keys/{key_id}/rotate"): ("key_invalid", "key_pepper_missing"),
    ("POST", "/v1/credentials"): (
        "insufficient_scope",
        "credential_exists",
        "credential_invalid",
        "encryption_not_configured",
    ),
    ("GET", "/v1/credentials"): ("cursor_invalid",),
}
# What every route that needs credentials may answer.
_AUTH_CODES = (
    "unauthenticated",
    "insufficient_scope",
    "identity_provider_unavailable",
    "rate_limited",
)
_BY_STATUS = {413: "body_too_large", 500: "internal_error", 503: "not_ready"}


def reference_app() -> FastAPI:
    """The app as built from its code, for the documents made from it (its lifespan not run)."""
    return main.create_app(Settings(database_url="sqlite+aiosqlite:///:memory:"))


def generate() -> str:
    """The reference of the app as built from its code."""
    app = reference_app()
    return render(openapi.openapi_document(app), websocket_paths(app.routes))


def openapi_text() -> str:
    """The app's OpenAPI document as committed in ``openapi/openapi.json``."""
    return openapi.dump(openapi.openapi_document(reference_app()))


def write_openapi(path: str | Path = OPENAPI_PATH) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(openapi_text(), encoding="utf-8")


def websocket_paths(routes: Iterable[BaseRoute]) -> list[str]:
    """The WebSocket routes among ``routes`` and the routers they include (OpenAPI has none)."""
    found: list[str] = []
    for route in routes:
        if isinstance(route, WebSocketRoute):
            found.append(route.path)
        # Mounts and routers carry `routes`; FastAPI's included routers their `original_router`.
        inner = getattr(getattr(route, "original_router", route), "routes", None)
        if inner is not None and inner is not routes:
            found += websocket_paths(inner)
    return found


def write_docs(path: str | Path = DEFAULT_PATH) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(generate(), encoding="utf-8")


def render(document: Mapping[str, Any], websocket_paths: list[str]) -> str:
    """The Markdown reference of an OpenAPI ``document`` (and the app's WebSocket routes)."""
    schemas: Mapping[str, Any] = document["components"]["schemas"]
    configs = node_configs(schemas)
    links = {name: anchor(name) for name in schemas}
    links |= {config: anchor(f"{kind} node") for kind, config in reversed(configs.items())}
    links |= {name: anchor("Node types") for name in schemas if name.startswith("NodeSpec_")}
    writer = SchemaWriter(schemas, links)
    operations = list(_operations(document))
    sections = [
        text.INTRO,
        "\n".join(_contents(operations, websocket_paths)),
        text.CONVENTIONS,
        "\n".join(_routes(operations, websocket_paths, writer)),
        "\n".join(_error_codes()),
        text.STREAMS,
        "\n".join(_events()),
        "\n".join(_workflow_document(writer)),
        "\n".join(_node_types(configs, writer)),
        "\n".join(_schemas(schemas, {*DOCUMENT_SCHEMAS, *configs.values()}, writer)),
    ]
    markdown = "\n".join(section.rstrip("\n") + "\n" for section in sections)
    _check_headings(markdown)
    return markdown


def node_configs(schemas: Mapping[str, Any]) -> dict[str, str]:
    """Core node type -> the name of its config schema, in registration order."""
    mapping: Mapping[str, str] = schemas["NodeSpec"]["discriminator"]["mapping"]
    found = {}
    for kind in CORE_NODE_TYPES:
        config = schemas[mapping[kind].removeprefix(REF_PREFIX)]["properties"]["config"]
        found[kind] = config["$ref"].removeprefix(REF_PREFIX)
    return found


def _operations(document: Mapping[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def _contents(
    operations: list[tuple[str, str, dict[str, Any]]], websocket_paths: list[str]
) -> list[str]:
    titles = ["Conventions", "Routes", "Error codes", "Event streams", "Events"]
    titles += ["Workflow document", "Node types", "Schemas"]
    lines = ["## Contents", ""]
    for title in titles:
        lines.append(f"- [{title}](#{anchor(title)})")
        if title == "Routes":
            routes = [f"{method} {path}" for method, path, _ in operations]
            routes += [f"WS {path}" for path in websocket_paths]
            lines += [f"  - [`{route}`](#{anchor(route)})" for route in routes]
    return lines


# -- routes and their errors ---------------------------------------------------------------------


def _routes(
    operations: list[tuple[str, str, dict[str, Any]]],
    websocket_paths: list[str],
    writer: SchemaWriter,
) -> list[str]:
    lines = ["## Routes", ""]
    for method, path, operation in operations:
        summary = cell(operation["summary"])
        lines += [f"### `{method} {path}`", "", summary.rstrip(".") + ".", ""]
        if operation.get("description"):
            lines += [cell(operation["description"]), ""]
        lines += _parameters(operation, writer)
        body = operation.get("requestBody")
        if body:
            schema = body["content"]["application/json"]["schema"]
            about = schema.get("description") or body.get("description") or ""
            lines += [f"Body: {writer.type_of(schema)}. {cell(about)}".rstrip(), ""]
        lines += _answers(method, path, operation, writer)
    streams = f"[Event streams](#{anchor('Event streams')})"
    for path in websocket_paths:
        lines += [f"### `WS {path}`", "", f"A run's events over a WebSocket: see {streams}.", ""]
    return lines


def _parameters(operation: Mapping[str, Any], writer: SchemaWriter) -> list[str]:
    parameters = operation.get("parameters") or []
    if not parameters:
        return []
    lines = ["| parameter | in | type | required / default | meaning |", "|---|---|---|---|---|"]
    for p in parameters:
        schema = {"description": p.get("description", ""), **p.get("schema", {})}
        need = "required" if p.get("required") else "optional"
        if "default" in schema:
            need = f"default {default(schema['default'])}"
        kind = writer.type_of(schema, nullable=False)
        lines.append(f"| `{p['name']}` | {p['in']} | {kind} | {need} | {writer.meaning(schema)} |")
    return [*lines, ""]


def _answers(
    method: str, path: str, operation: Mapping[str, Any], writer: SchemaWriter
) -> list[str]:
    responses: Mapping[str, Any] = operation["responses"]
    codes = route_codes(method, path, operation)
    lines = ["| status | answer | when |", "|---|---|---|"]
    for status in sorted(responses, key=lambda s: (s[0] in "45", s)):
        response = responses[status]
        if status[0] in "45":
            answer = ", ".join(f"`{code}`" for code in codes[int(status)])
        else:
            answer = _body(response, writer)
        when = response.get("description", "")
        when = "success" if when == "Successful Response" else cell(when)
        lines.append(f"| {status} | {answer} | {when} |")
    return [*lines, ""]


def _body(response: Mapping[str, Any], writer: SchemaWriter) -> str:
    content: Mapping[str, Any] = response.get("content") or {}
    if not content:
        return "no body"
    media, spec = next(iter(content.items()))
    if media == "application/json":
        return writer.type_of(spec.get("schema", {}))
    return f"`{media}`"


def error_catalogue() -> dict[str, tuple[int, str]]:
    """Every code an error answer can carry: code -> (status, meaning)."""
    found = dict(text.API_CODES)
    for error in _subclasses(OxifyError):
        status = api_errors.status_for(error.code)
        if status != 500:  # 500: not an answer the API gives on purpose
            found[error.code] = (status, _first_line(error))
    return found


def route_codes(method: str, path: str, operation: Mapping[str, Any]) -> dict[int, list[str]]:
    """Error status -> the codes this route answers with it; every documented error status has
    at least one, and no code has a status the route does not document."""
    catalogue = error_catalogue()
    statuses = {int(s) for s in operation["responses"] if s[0] in "45"}
    derived = [_BY_STATUS[s] for s in statuses if s in _BY_STATUS]
    if 422 in statuses and (operation.get("parameters") or operation.get("requestBody")):
        derived.append("request_invalid")
    if 404 in statuses:
        for param in operation.get("parameters") or []:
            if param["in"] == "path" and param["name"].endswith("_id"):
                derived.append(param["name"].removesuffix("_id") + "_not_found")
    if operation.get("security"):
        derived += _AUTH_CODES
    found: dict[int, list[str]] = {status: [] for status in statuses}
    for code in [*derived, *ROUTE_CODES.get((method, path), ())]:
        if code not in catalogue:
            raise ValueError(f"{method} {path}: unknown error code {code!r}")
        status = catalogue[code][0]
        if status not in found:
            raise ValueError(f"{method} {path}: answers {code} ({status}), undocumented status")
        found[status].append(code)
    for status, codes in found.items():
        if not codes:
            raise ValueError(f"{method} {path}: {status} has no code (see ROUTE_CODES)")
    return found


def _error_codes() -> list[str]:
    lines = ["## Error codes", "", "The `code` of an error answer, and its status.", ""]
    lines += ["| code | status | meaning |", "|---|---|---|"]
    for code, (status, meaning) in sorted(error_catalogue().items(), key=lambda i: (i[1][0], i)):
        lines.append(f"| `{code}` | {status} | {cell(meaning)} |")
    lines += ["", "A failed node (in `node.failed`, and as the run's `error`) carries one of:", ""]
    lines += ["| code | meaning |", "|---|---|"]
    node_errors: list[type[OxifyError]] = [NodeError, *_subclasses(NodeError)]
    for error in node_errors:
        lines.append(f"| `{error.code}` | {cell(_first_line(error))} |")
    return [*lines, ""]


def _subclasses(root: type[OxifyError]) -> list[type[OxifyError]]:
    """The app's subclasses of ``root`` (not those a test or a plug-in defines)."""
    found: list[type[OxifyError]] = []
    for sub in root.__subclasses__():
        if sub.__module__.startswith("app."):
            found += [sub, *_subclasses(sub)]
    return found


def _first_line(error: type[OxifyError]) -> str:
    return (error.__doc__ or error.code).strip().splitlines()[0]


# -- events, the document, node types, schemas ---------------------------------------------------


def _events() -> list[str]:
    missing = [kind.value for kind in EventType if kind not in text.EVENTS]
    if missing:
        raise ValueError(f"event types without a description in cli_docs_text.EVENTS: {missing}")
    lines = ["## Events", "", "| type | sent when | `data` |", "|---|---|---|"]
    for kind in EventType:
        when, data = text.EVENTS[kind]
        lines.append(f"| `{kind.value}` | {cell(when)} | {cell(data)} |")
    return [*lines, ""]


def _workflow_document(writer: SchemaWriter) -> list[str]:
    lines = [text.DOCUMENT]
    for name in DOCUMENT_SCHEMAS:
        lines += [f"### `{name}`", ""]
        if name == "NodeSpec":
            lines += _node_fields(writer)
        else:
            lines += writer.describe(name)
    return lines


def _node_fields(writer: SchemaWriter) -> list[str]:
    """The fields every node has (its `config` depends on its `type`)."""
    schemas = writer.schemas
    mapping = schemas["NodeSpec"]["discriminator"]["mapping"]
    variant = dict(schemas[next(iter(mapping.values())).removeprefix(REF_PREFIX)])
    properties = dict(variant["properties"])
    properties["type"] = {"type": "string", "description": "One of the node types below."}
    properties["config"] = {"type": "object", "description": "The type's config (below)."}
    variant["properties"] = properties
    intro = cell(schemas["NodeSpec"].get("description", ""))
    return [intro, "", *writer.fields(variant), ""]


def _node_types(configs: Mapping[str, str], writer: SchemaWriter) -> list[str]:
    missing = [kind for kind in configs if kind not in text.NODE_OUTPUTS]
    if missing:
        raise ValueError(f"node types without an output in cli_docs_text.NODE_OUTPUTS: {missing}")
    lines = ["## Node types", "", "Unknown config keys are refused.", ""]
    for kind, config in configs.items():
        lines += [f"### `{kind}` node", "", cell(CORE_NODE_TYPES[kind].description), ""]
        expressions = CORE_NODE_TYPES[kind].config.expressions
        fields = writer.fields(writer.schemas[config], expressions)
        lines += ["Config:", "", *fields, ""] if fields else ["No config.", ""]
        lines += [f"Output: {text.NODE_OUTPUTS[kind]}", ""]
    return lines


def _schemas(schemas: Mapping[str, Any], shown: set[str], writer: SchemaWriter) -> list[str]:
    lines = ["## Schemas", "", "Bodies and answers the routes refer to.", ""]
    for name in sorted(schemas):
        if name in shown or name.startswith("NodeSpec_"):
            continue
        lines += [f"### `{name}`", "", *writer.describe(name)]
    return lines


def _check_headings(markdown: str) -> None:
    seen: set[str] = set()
    fenced = False
    for line in markdown.splitlines():
        fenced ^= line.lstrip().startswith("```")
        if line.startswith("#") and not fenced:
            key = anchor(line.lstrip("#"))
            if key in seen:
                raise ValueError(f"two headings share the anchor #{key}")
            seen.add(key)
