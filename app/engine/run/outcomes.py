"""What an executor hands back to the scheduler."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class NodeOutput:
    """A finished node: its output, the branch it took (if it branches), its effect on vars.

    ``data`` holds metadata kept with the node record (token counts, HTTP status, ...) and shown
    beside ``output`` in the node's result.
    """

    output: Any = None
    branch: str | None = None
    set_vars: dict[str, Any] | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Suspend:
    """The node cannot finish until something outside the run happens (a person answers).

    The node becomes ``waiting``; once nothing else can run the run ends as ``waiting`` and
    holds no task. It is executed again when resumed, with the delivered value in
    ``NodeContext.resume_value``.
    """

    reason: str
    data: dict[str, Any] = field(default_factory=dict)
