"""Tool calls that need people's approval before they run.

A call waits on a form of kind ``approval`` whose ``context`` shows the tool, its arguments and
the model's reasoning (the text of its turn). The node suspends (the run becomes ``waiting`` and
holds no task); when the approval is decided or its deadline passes, the run is queued again,
the node replays its recorded steps and finds the answer in ``ctx.resume_value``, which it
journals at once as the call's ``…/approval`` step: later resumptions read the step, not the
form. The forms API applies the same approvers, quorum, audit trail and no-self-approval rule
as the ``approval`` node's.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from app.domain import human
from app.domain.agent_nodes import ToolApproval
from app.domain.events import EventType
from app.domain.status import NodeStatus
from app.engine.run.context import NodeContext
from app.engine.run.outcomes import Suspend
from app.nodes.human import FORM_NAMESPACE


async def decision(
    ctx: NodeContext,
    step: str,
    approval: ToolApproval,
    context: dict[str, Any],
) -> dict[str, Any] | Suspend:
    """The recorded decision on the call whose step is ``step``, or the :class:`Suspend` that
    waits for it (asking once: a run resumed for something else waits on the same form)."""
    name = f"{step}/approval"
    form_id = str(uuid.uuid5(FORM_NAMESPACE, f"{ctx.execution_id}/{ctx.key}/{step}"))
    decided: dict[str, Any] | None = None
    if not ctx.has_step(name):
        delivered = ctx.resume_value
        if not (isinstance(delivered, dict) and delivered.get("form_id") == form_id):
            return _ask(ctx, form_id, approval, context)
        decided = _decided(delivered, approval)
        ctx.log_event(
            EventType.FORM_TIMED_OUT if decided["timed_out"] else EventType.FORM_SUBMITTED,
            {"form_id": form_id, "by": decided["by"]},
        )

    async def record() -> dict[str, Any] | None:  # runs only when the answer was delivered
        return decided

    recorded: dict[str, Any] = await ctx.step(name, record)
    return recorded


def _ask(
    ctx: NodeContext, form_id: str, approval: ToolApproval, context: dict[str, Any]
) -> Suspend:
    previous = ctx.previous
    if (
        previous is not None
        and previous.status is NodeStatus.WAITING
        and (previous.data or {}).get("form_id") == form_id
    ):  # asked before the run stopped to wait: still waiting on the same form
        return Suspend("form", {k: v for k, v in (previous.data or {}).items() if k != "reason"})
    deadline = (
        (ctx.clock.now() + timedelta(seconds=approval.timeout_s)).isoformat()
        if approval.timeout_s is not None
        else None
    )
    ctx.log_event(
        EventType.FORM_REQUESTED,
        {
            "form_id": form_id,
            "kind": "approval",
            "prompt": f"The agent {ctx.node_id!r} asks to call the tool {context['tool']!r}.",
            "fields": human.approval_fields(),
            "approvers": approval.approvers,
            "quorum": approval.required,
            "allow_self_approval": False,
            "on_timeout": approval.on_timeout,
            "deadline": deadline,
            "context": context,
        },
    )
    return Suspend("form", {"form_id": form_id, "kind": "approval", "deadline": deadline})


def _decided(delivered: dict[str, Any], approval: ToolApproval) -> dict[str, Any]:
    """The answer the run received, as the call's approval step keeps it."""
    answer = delivered.get("answer") or {}
    if delivered.get("status") == "timed_out":
        approved = approval.on_timeout == "approve"
        return {"approved": approved, "by": [], "comment": None, "timed_out": True}
    approved = answer.get("decision") == human.APPROVED
    approvals = answer.get("approvals") or [{"by": answer.get("by"), "decision": "approved"}]
    by = (
        [a["by"] for a in approvals if a.get("decision") == human.APPROVED]
        if approved
        else [answer.get("by")]
    )
    return {"approved": approved, "by": by, "comment": answer.get("comment"), "timed_out": False}
