"""Request parts rendered from a node's config, for the nodes that call HTTP APIs: header and
query values may hold secrets, so a value that does not render is reported without being shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.engine.run.context import NodeContext
from app.errors import NodeConfigError


async def render_hidden(ctx: NodeContext, field: str) -> Any:
    """Render a field whose values may be secrets: a bad value is reported without them."""
    try:
        return await ctx.render(field)
    except NodeConfigError:
        raise NodeConfigError(
            f"config field {field!r} rendered to a value that is not valid: each value must be "
            "text, a number, a boolean or null (values are not shown: they may hold secrets)"
        ) from None


def headers(values: Mapping[str, Any]) -> dict[str, str]:
    """Header values as text; ``None`` leaves the header out."""
    out: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        text = _scalar_text(value)
        if any(c in text for c in "\r\n\0"):
            raise NodeConfigError(f"header {name!r}: the value holds a line break or NUL")
        out[name] = text
    return out


def params(values: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """Query parameters as text pairs; a list repeats the name, ``None`` leaves it out."""
    return tuple(
        (name, _scalar_text(item))
        for name, value in values.items()
        for item in (value if isinstance(value, list) else [value])
        if item is not None
    )


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
