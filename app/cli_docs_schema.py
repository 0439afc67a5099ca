"""JSON Schemas (the OpenAPI document's components) written as Markdown for the API reference:
a type in a few words, a table of an object's fields, and the anchors that link them."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

REF_PREFIX = "#/components/schemas/"
_TEMPLATE_PATTERN = r"^\s*\{\{.*\}\}\s*$"
_CONSTRAINTS = (
    ("minimum", "≥ {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "≤ {}"),
    ("exclusiveMaximum", "< {}"),
    ("minLength", "at least {} characters"),
    ("maxLength", "at most {} characters"),
    ("minItems", "at least {} items"),
    ("maxItems", "at most {} items"),
    ("pattern", "matches `{}`"),
)
_NOT_EMPTY = {"at least 1 characters", "at least 1 items"}


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def ref_name(schema: Mapping[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref.removeprefix(REF_PREFIX) if isinstance(ref, str) else None


def cell(text: str) -> str:
    """Text fit for a table cell: one line, pipes escaped, and ``<`` outside code spans
    escaped (``vars.<name>`` would otherwise read as an HTML tag and vanish)."""
    parts = " ".join(text.split()).replace("|", "\\|").split("`")
    parts[::2] = [part.replace("<", "&lt;") for part in parts[::2]]
    return "`".join(parts)


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def default(value: Any) -> str:
    return f"`{json.dumps(_number(value), ensure_ascii=False)}`"


class SchemaWriter:
    """Writes schemas, linking each named schema to the heading that documents it."""

    def __init__(self, schemas: Mapping[str, Any], links: Mapping[str, str]) -> None:
        self.schemas = schemas
        self.links = links  # schema name -> anchor

    def type_of(self, schema: Mapping[str, Any], *, nullable: bool = True) -> str:
        """A schema's type in a few words: `string`, list of [`Edge`](#edge), `"a"` or `"b"`
        (``nullable=False`` leaves out `null`, which a query parameter cannot be)."""
        name = ref_name(schema)
        if name is not None:
            return f"[`{name}`](#{self.links[name]})" if name in self.links else f"`{name}`"
        if "const" in schema:
            return f"`{json.dumps(schema['const'])}`"
        if "enum" in schema:
            return " or ".join(f"`{json.dumps(value)}`" for value in schema["enum"])
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = [o for o in schema[key] if nullable or o.get("type") != "null"]
                return " or ".join(dict.fromkeys(self.type_of(option) for option in options))
        kind = schema.get("type")
        if kind in ("array", "object"):
            inner = schema.get("items" if kind == "array" else "additionalProperties")
            container = "list" if kind == "array" else "object"
            if not isinstance(inner, dict):
                return container
            words = self.type_of(inner)
            return f"{container} of ({words})" if " or " in words else f"{container} of {words}"
        if kind == "string" and schema.get("pattern") == _TEMPLATE_PATTERN:
            return "template `{{ … }}`"
        if kind == "string" and "format" in schema:
            return f"`string` ({schema['format']})"
        return f"`{kind}`" if isinstance(kind, str) else "any JSON"

    def constraints(self, schema: Mapping[str, Any]) -> list[str]:
        found = [text.format(_number(schema[key])) for key, text in _CONSTRAINTS if key in schema]
        found = ["not empty" if c in _NOT_EMPTY else c for c in found]
        if schema.get("pattern") == _TEMPLATE_PATTERN:
            found = [c for c in found if not c.startswith("matches")]
        for option in schema.get("anyOf", ()):
            found += self.constraints(option)
        return list(dict.fromkeys(found))

    def meaning(self, schema: Mapping[str, Any]) -> str:
        """A field's description, its constraints after it in brackets."""
        about = schema.get("description", "").strip()
        limits = ", ".join(self.constraints(schema))
        if about and limits:
            return cell(f"{about} ({limits})")
        return cell(about or limits)

    def fields(
        self, schema: Mapping[str, Any], expressions: frozenset[str] = frozenset()
    ) -> list[str]:
        """A table of an object schema's properties (empty when it has none); ``expressions``
        are fields read as expressions rather than as text."""
        properties: Mapping[str, Any] = schema.get("properties") or {}
        if not properties:
            return []
        required = set(schema.get("required", ()))
        rows = ["| field | type | required / default | meaning |", "|---|---|---|---|"]
        for name, prop in properties.items():
            need = "required" if name in required else "optional"
            if "default" in prop:
                need = f"default {default(prop['default'])}"
            kind = "expression" if name in expressions else self.type_of(prop)
            rows.append(f"| `{name}` | {kind} | {need} | {self.meaning(prop)} |")
        return rows

    def describe(self, name: str) -> list[str]:
        """A named schema: its description, then its fields or its values."""
        schema: Mapping[str, Any] = self.schemas[name]
        lines = [cell(schema["description"]), ""] if schema.get("description") else []
        if "enum" in schema:
            lines.append("One of " + ", ".join(f"`{v}`" for v in schema["enum"]) + ".")
        elif "properties" in schema:
            lines += self.fields(schema)
        elif schema.get("type") == "object":
            lines.append("A JSON object (no fixed fields).")
        else:
            lines.append(f"{self.type_of(schema)}.")
        return [*lines, ""]
