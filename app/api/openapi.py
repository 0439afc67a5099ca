"""The OpenAPI document: FastAPI's, plus the workflow JSON Schema and problem+json errors.

Three things FastAPI cannot say by itself: a workflow document body (taken as a raw object so
the service reports document pointers) is typed by the full workflow JSON Schema, whose
``$defs`` join ``components/schemas``; error answers are ``application/problem+json``; and an
optional parameter is absent, never ``null`` (a query string or a header cannot say null).
Links between operations come from :mod:`app.api.links`.

``oxify openapi`` (``app.cli_docs``) writes it for the composition root's app to
``openapi/openapi.json``.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette import routing

from app.api import links
from app.api.schemas import PROBLEM_MEDIA_TYPE, ProblemDetails, WorkflowDocument
from app.domain.schema import workflow_json_schema

SCHEMAS_REF = "#/components/schemas/"
_DEFS_REF = "#/$defs/"


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """A fresh OpenAPI document of ``app`` (not cached)."""
    document = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
        servers=app.servers,
        separate_input_output_schemas=app.separate_input_output_schemas,
    )
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    if WorkflowDocument.__name__ in schemas:
        _add_workflow_schema(schemas)
    _security(document)
    _errors_as_problems(document)
    _parameters_never_null(document)
    links.add(document)
    return document


def _add_workflow_schema(schemas: dict[str, Any]) -> None:
    """Replace the raw-object body schema by the workflow JSON Schema, ``$defs`` alongside."""
    full = _rewrite_refs(workflow_json_schema())
    defs: dict[str, Any] = full.pop("$defs")
    full.pop("$schema", None)
    for name, schema in defs.items():
        if name in schemas and schemas[name] != schema:
            raise ValueError(f"workflow schema definition {name!r} clashes with an API schema")
        schemas[name] = schema
    schemas[WorkflowDocument.__name__] = full


def _rewrite_refs(node: Any) -> Any:
    """Point ``$defs`` references (``$ref`` and discriminator mappings) at the components."""
    if isinstance(node, list):
        return [_rewrite_refs(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref" and isinstance(value, str):
            out[key] = value.replace(_DEFS_REF, SCHEMAS_REF, 1)
        elif key == "mapping" and isinstance(value, dict):
            out[key] = {k: v.replace(_DEFS_REF, SCHEMAS_REF, 1) for k, v in value.items()}
        else:
            out[key] = _rewrite_refs(value)
    return out


SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (`oxify_<key id>_<secret><checksum>`) or, when configured, "
        "an OIDC access token. Not needed while no key exists (a loopback-only service).",
    }
}
_AUTH_RESPONSES = {
    "401": "No valid credentials: send `Authorization: Bearer <api key or token>`.",
    "403": "The credentials lack the scope this needs (`x-oxify-scopes` lists those that may).",
    "429": "Too many requests, failed authentications or runs (a rate limit or quota): "
    "`Retry-After` says when to try again; `RateLimit-Policy` and `RateLimit` say which limit "
    "and what is left.",
    "503": "Not ready, or the identity provider's keys cannot be fetched; `Retry-After` says "
    "when to try again.",
}


def _security(document: dict[str, Any]) -> None:
    """The bearer scheme, and 401/403/429 answers on every operation that needs credentials."""
    document["components"]["securitySchemes"] = SECURITY_SCHEMES
    problem_schema = {"$ref": SCHEMAS_REF + ProblemDetails.__name__}
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or not operation.get("security"):
                continue
            responses = operation.setdefault("responses", {})
            for code, description in _AUTH_RESPONSES.items():
                responses.setdefault(
                    code,
                    {"description": description, "content": {"": {"schema": problem_schema}}},
                )


def _errors_as_problems(document: dict[str, Any]) -> None:
    """Error answers documented with ProblemDetails are served as problem+json, whatever the
    route's own media type (FastAPI files them under it)."""
    problem_schema = {"$ref": SCHEMAS_REF + ProblemDetails.__name__}
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                content = response.get("content", {})
                if any(media.get("schema") == problem_schema for media in content.values()):
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": problem_schema}}


def methods_of(document: dict[str, Any], path: str) -> list[str]:
    """The methods ``document`` lists for the path that ``path`` matches (none: []): a path
    written out (``/v1/workflows/health``) before a template that also matches it
    (``/v1/workflows/{workflow_id}``), whatever their order in the document."""
    paths = document.get("paths", {})
    template = (
        path
        if path in paths
        else next((t for t in paths if _path_pattern(t).fullmatch(path)), None)
    )
    if template is None:
        return []
    return sorted(method.upper() for method in paths[template] if method in _METHODS)


_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


@functools.lru_cache(maxsize=256)
def _path_pattern(template: str) -> re.Pattern[str]:
    pattern, _format, _convertors = routing.compile_path(template)
    return pattern


def _parameters_never_null(document: dict[str, Any]) -> None:
    """An optional parameter's schema is its non-null branch: FastAPI writes ``T | None`` as
    ``anyOf: [T, null]``, and a client taking that at its word would send "null"."""
    null = {"type": "null"}
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                schema = parameter["schema"]
                branches = schema.get("anyOf", [])
                if null not in branches:
                    continue
                kept = [branch for branch in branches if branch != null]
                outer = {key: value for key, value in schema.items() if key != "anyOf"}
                inner = kept[0] if len(kept) == 1 else {"anyOf": kept}
                parameter["schema"] = {**inner, **outer}


def install(app: FastAPI) -> None:
    """Serve this document at ``/openapi.json`` (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def dump(document: dict[str, Any]) -> str:
    """The document as committed: indent 2, sorted keys, UTF-8 text, trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
