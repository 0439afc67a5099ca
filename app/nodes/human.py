"""Human steps: ``approval`` and ``form`` suspend the run until people answer.

The first execution asks: it logs ``form.requested`` (the store makes a form row of it) and
returns :class:`Suspend`; the run ends as ``waiting`` once nothing else can run, holding no task.
When the form is decided (or its deadline passes), the run is queued again and this node runs
again with the answer in ``ctx.resume_value``; it logs ``form.submitted`` or ``form.timed_out``
and completes (or fails, per ``on_timeout``). A run resumed for any other reason finds the node
still waiting and re-suspends without asking again: one request per node execution.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, ClassVar, cast

from app.domain import human
from app.domain.events import EventType
from app.domain.node_types import CORE_NODE_TYPES
from app.domain.status import NodeStatus
from app.engine.run.context import NodeContext
from app.engine.run.outcomes import NodeOutput, Suspend
from app.errors import FormTimedOut
from app.nodes.plugin import NodeDefinition
from app.nodes.resources import NodeResources

# Form ids are derived from the run, the node key and the attempt: a request replayed after a
# crash gets the same id (and the same row), a new attempt a new one.
FORM_NAMESPACE = uuid.UUID("5f0c7a52-7d1e-4d61-9a54-0b1f3c2e9d11")


def definitions(_resources: NodeResources) -> list[NodeDefinition]:
    """``approval`` and ``form``: one executor (answers arrive through the run, not resources)."""
    executor = HumanExecutor()
    return [
        NodeDefinition(CORE_NODE_TYPES["approval"], executor),
        NodeDefinition(CORE_NODE_TYPES["form"], executor),
    ]


class HumanExecutor:
    """Executor of both human node types (the config's class tells which)."""

    # It never waits for anything outside (answers arrive as resume values), so it needs no
    # task of its own: a resumed run completes it in the same step as its resumption.
    inline: ClassVar[bool] = True

    async def execute(self, ctx: NodeContext) -> NodeOutput | Suspend:
        waiting = _waiting_on(ctx)
        delivered = ctx.resume_value
        if waiting is not None:
            form_id = waiting["form_id"]
            if isinstance(delivered, dict) and delivered.get("form_id") == form_id:
                return _answered(ctx, form_id, delivered)
            return Suspend("form", waiting)  # resumed for something else: still waiting
        return await _ask(ctx)


def _waiting_on(ctx: NodeContext) -> dict[str, Any] | None:
    """The request this node made before the run stopped to wait, if it did."""
    previous = ctx.previous
    if previous is None or previous.status is not NodeStatus.WAITING or not previous.data:
        return None
    data = {k: v for k, v in previous.data.items() if k != "reason"}
    return data if "form_id" in data else None


async def _ask(ctx: NodeContext) -> Suspend:
    config = ctx.config
    approval = isinstance(config, human.ApprovalConfig)
    form_id = str(uuid.uuid5(FORM_NAMESPACE, f"{ctx.execution_id}/{ctx.key}/{ctx.attempt}"))
    timeout = await ctx.render("timeout_s")
    deadline = (
        (ctx.clock.now() + timedelta(seconds=float(timeout))).isoformat()
        if timeout is not None
        else None
    )
    request: dict[str, Any] = {
        "form_id": form_id,
        "kind": "approval" if approval else "form",
        "prompt": str(await ctx.render("prompt")),
        "on_timeout": config.on_timeout,  # type: ignore[attr-defined]
        "deadline": deadline,
    }
    if approval:
        config = cast(human.ApprovalConfig, config)
        request |= {
            "fields": human.approval_fields(),
            "approvers": config.approvers,
            "quorum": config.quorum,
            "allow_self_approval": config.allow_self_approval,
        }
    else:
        request["fields"] = cast(human.FormConfig, config).fields
    ctx.log_event(EventType.FORM_REQUESTED, request)
    return Suspend("form", {"form_id": form_id, "kind": request["kind"], "deadline": deadline})


def _answered(ctx: NodeContext, form_id: str, delivered: dict[str, Any]) -> NodeOutput:
    answer = delivered.get("answer") or {}
    approval = isinstance(ctx.config, human.ApprovalConfig)
    if delivered.get("status") == "timed_out":
        ctx.log_event(EventType.FORM_TIMED_OUT, {"form_id": form_id, **answer})
        return _timed_out(ctx, answer)
    ctx.log_event(EventType.FORM_SUBMITTED, {"form_id": form_id, "by": answer.get("by")})
    if approval:
        decision = answer["decision"]
        return NodeOutput(answer, branch=decision)
    branches = ctx.config.branches()
    return NodeOutput(answer.get("values"), branch=human.SUBMITTED if branches else None)


def _timed_out(ctx: NodeContext, answer: dict[str, Any]) -> NodeOutput:
    on_timeout = ctx.config.on_timeout  # type: ignore[attr-defined]
    if on_timeout == "fail":
        raise FormTimedOut(f"nobody answered by the deadline ({answer.get('deadline')})")
    if on_timeout == "branch":
        return NodeOutput(None, branch=human.TIMED_OUT)
    if isinstance(ctx.config, human.ApprovalConfig):
        decision = human.APPROVED if on_timeout == "approve" else human.REJECTED
        output = {"decision": decision, "comment": None, "by": None, "at": answer.get("deadline")}
        return NodeOutput({**output, "timed_out": True}, branch=decision)
    # on_timeout == "default": the fields' defaults stand in for the answer.
    properties = cast(human.FormConfig, ctx.config).fields.get("properties", {})
    return NodeOutput({k: v["default"] for k, v in properties.items() if "default" in v})
