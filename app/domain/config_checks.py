"""Checks of node configs that need the outside world, which the pure validation cannot make.

Planning a document checks its shape, types and references without any I/O. A node type may
add a *check* (``NodeDefinition(check=...)``): an async function given one node's validated
config that asks the world about it (does the MCP server list that tool?) and answers
:class:`Finding` s. The workflow service runs the checks of every node, nested ones included,
once the document planned cleanly: an error finding rejects the document like a validation
error (422), a warning is returned with the accepted document. A check must bound its own wait
and answer a warning rather than an error when it could not find out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from app.domain.node_config import NodeConfig


@dataclass(frozen=True, slots=True)
class Finding:
    """What a check found about one field of a node's config.

    ``field`` names the config field ("" for the config as a whole); ``code`` is the
    validation error code (``unknown_tool``); ``warning`` findings do not
    reject the document (the check could not tell, e.g. the server did not answer).
    """

    field: str
    message: str
    code: str = "invalid_value"
    warning: bool = False
    at: tuple[str | int, ...] = ()  # where inside the field (``("0", "include", 1)``)


ConfigCheck = Callable[[NodeConfig], Awaitable[Sequence[Finding]]]
"""Checks one node's validated config (an instance of its type's config model)."""
