"""What an executor hands back to the scheduler, and how a nested graph ended."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.domain.status import ExecutionStatus, NodeStatus
from app.errors import NodeError, OxifyError


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


@dataclass(slots=True)
class GraphResult:
    """How a nested graph ended: ``completed`` with ``output``, or ``failed`` with ``error``."""

    status: ExecutionStatus
    output: Any = None
    error: dict[str, Any] | None = None
    statuses: dict[str, NodeStatus] = field(default_factory=dict)
    waiting_on: list[str] = field(default_factory=list)


class GraphInterrupted(BaseException):
    """A nested graph stopped before finishing (paused, waiting or cancelled).

    A BaseException so that executors catching ``Exception`` cannot swallow it: the container
    node is then neither completed nor failed, and runs again (its finished body nodes are
    memoized) when the run continues.
    """

    def __init__(self, status: ExecutionStatus, waiting_on: list[str]) -> None:
        super().__init__(status.value)
        self.status = status
        self.waiting_on = waiting_on


def as_node_error(exc: Exception) -> NodeError:
    """Any exception an executor lets out, as a NodeError.

    Oxify's own non-node errors (a bad expression at run time) are not worth retrying; an
    unexpected exception is, since it is most often transient (a dropped connection).
    """
    if isinstance(exc, NodeError):
        return exc
    if isinstance(exc, OxifyError):
        error = NodeError(exc.message, retryable=False)
        error.code = exc.code  # type: ignore[misc]  # keep the cause's stable code
        return error
    return NodeError(f"{type(exc).__name__}: {exc}", details={"exception": type(exc).__name__})


def error_payload(error: NodeError, key: str) -> dict[str, Any]:
    """The JSON shape of a node error in events, records and run results."""
    payload: dict[str, Any] = {"code": error.code, "message": error.message, "node_id": key}
    if error.details:
        payload["details"] = error.details
    return payload
