"""Human steps: the ``approval`` and ``form`` node configs, and the form requests they make.

A form's ``fields`` is a JSON Schema object restricted to what a reviewer's screen can render:
strings (with ``format``, ``pattern``, lengths), numbers and integers (with bounds), booleans,
``enum`` of any of those, and arrays of them; ``required``, ``default``, ``title`` and
``description`` for display. Anything else is refused when the document is validated, so a form
that is accepted can always be shown and answered.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from app.domain.node_config import NodeConfig, TemplateStr

MAX_FIELDS = 100
MAX_TIMEOUT_S = 366 * 24 * 3600  # seconds: a year and a day
APPROVED, REJECTED, TIMED_OUT, SUBMITTED = "approved", "rejected", "timed_out", "submitted"

Timeout = Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S)] | TemplateStr | None
"""Seconds a person has to answer (unset: no deadline)."""
ApprovalTimeout = Literal["fail", "reject", "approve", "branch"]
FormTimeout = Literal["fail", "default", "branch"]

_SCALARS = {"string", "number", "integer", "boolean"}
_COMMON = {"type", "title", "description", "default", "enum"}
_ALLOWED = {
    "string": _COMMON | {"format", "pattern", "minLength", "maxLength"},
    "number": _COMMON | {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
    "integer": _COMMON | {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
    "boolean": _COMMON,
    "array": {
        "type",
        "title",
        "description",
        "default",
        "items",
        "minItems",
        "maxItems",
        "uniqueItems",
    },
}
FORMATS = frozenset(
    {"email", "uri", "date", "date-time", "time", "uuid", "hostname", "ipv4", "ipv6"}
)


class ApprovalConfig(NodeConfig):
    """A decision by people: ``quorum`` approvals approve, a single rejection rejects."""

    static = frozenset({"approvers", "quorum", "allow_self_approval", "on_timeout"})

    prompt: str = Field(min_length=1, max_length=20_000)
    approvers: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="User ids, or `group:<name>`; unset: anyone may answer.",
    )
    quorum: int = Field(default=1, ge=1, le=1000)
    allow_self_approval: bool = False
    timeout_s: Timeout = None
    on_timeout: ApprovalTimeout = "fail"

    @model_validator(mode="after")
    def _consistent(self) -> ApprovalConfig:
        if self.approvers is not None and self.quorum > len(set(self.approvers)):
            distinct = len(set(self.approvers))
            raise ValueError(f"quorum {self.quorum} exceeds the {distinct} approvers")
        return self

    def branches(self) -> frozenset[str]:
        base = {APPROVED, REJECTED}
        return frozenset(base | {TIMED_OUT} if self.on_timeout == "branch" else base)


class FormConfig(NodeConfig):
    """Values a person fills in, validated against ``fields`` (a JSON Schema object)."""

    static = frozenset({"fields", "on_timeout"})

    prompt: str = Field(min_length=1, max_length=20_000)
    fields: dict[str, Any]
    timeout_s: Timeout = None
    on_timeout: FormTimeout = "fail"

    @model_validator(mode="after")
    def _renderable(self) -> FormConfig:
        check_fields(self.fields)
        return self

    def branches(self) -> frozenset[str] | None:
        return frozenset({SUBMITTED, TIMED_OUT}) if self.on_timeout == "branch" else None


def check_fields(schema: Mapping[str, Any]) -> None:
    """Raise ValueError unless ``schema`` is a form a reviewer's screen can render."""
    if schema.get("type") != "object":
        raise ValueError("fields must be a JSON Schema with type 'object'")
    unknown = set(schema) - {
        "type",
        "properties",
        "required",
        "title",
        "description",
        "additionalProperties",
        "$schema",
    }
    if unknown:
        raise ValueError(f"fields: unsupported keywords {sorted(unknown)}")
    properties = schema.get("properties")
    if not isinstance(properties, Mapping) or not properties:
        raise ValueError("fields must declare at least one property")
    if len(properties) > MAX_FIELDS:
        raise ValueError(f"fields: at most {MAX_FIELDS} properties")
    for name, spec in properties.items():
        _check_field(f"fields.properties.{name}", spec, allow_array=True)
    required = schema.get("required", [])
    if not isinstance(required, list) or any(r not in properties for r in required):
        raise ValueError("fields.required must list declared properties")
    if schema.get("additionalProperties", False) is not False:
        raise ValueError("fields.additionalProperties must be false (or left out)")


def _check_field(where: str, spec: Any, *, allow_array: bool) -> None:
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where} must be an object")
    kind = spec.get("type")
    if kind == "array" and allow_array:
        _check_field(f"{where}.items", spec.get("items"), allow_array=False)
    elif kind not in _SCALARS:
        shown = "string, number, integer, boolean" + (" or array" if allow_array else "")
        raise ValueError(f"{where}.type must be {shown}")
    unknown = set(spec) - _ALLOWED[kind]
    if unknown:
        raise ValueError(f"{where}: unsupported keywords {sorted(unknown)}")
    if "format" in spec and spec["format"] not in FORMATS:
        raise ValueError(f"{where}.format must be one of {sorted(FORMATS)}")
    if "pattern" in spec:
        try:
            re.compile(spec["pattern"])
        except (re.error, TypeError) as exc:
            raise ValueError(f"{where}.pattern is not a regular expression: {exc}") from None
    if "enum" in spec and (not isinstance(spec["enum"], list) or not spec["enum"]):
        raise ValueError(f"{where}.enum must be a non-empty list")


def approval_fields(comment_required: bool = False) -> dict[str, Any]:
    """An approval's answer as a form, so one client renders both kinds."""
    return {
        "type": "object",
        "properties": {
            "decision": {"type": "string", "enum": [APPROVED, REJECTED], "title": "Decision"},
            "comment": {"type": "string", "title": "Comment", "maxLength": 10_000},
        },
        "required": ["decision", "comment"] if comment_required else ["decision"],
        "additionalProperties": False,
    }
