"""The ``agent`` node: a model that calls tools, turn after turn, until it answers.

Durability, step by step. Each model turn is a durable step (``turn-<n>``), each tool call one
too (``turn-<n>/call-<i>``), and each approval decision (``turn-<n>/call-<i>/approval``). After
a crash, a takeover, a pause, a wait for people or a retry, the node runs again from the top:
recorded turns, calls and decisions come back from the journal without a request, in the same
order, and the loop goes on from the first step that did not finish. So a finished model turn
is never sent again and a finished tool call never runs again; the one thing that can repeat
is a call that was running when the process died (it never recorded a result): it runs again
with the same idempotency key (``Idempotency-Key`` for http tools, ``_meta`` for MCP, the same
node keys for a sub-workflow, whose finished nodes are replayed). A model turn interrupted
mid-answer is asked again (it was not paid for, or its answer was lost with the process).

Every failure of a tool call (arguments that do not fit the schema, an unknown tool, an error,
a timeout, a rejection) goes back to the model as an error result; the node fails only when a
run limit is crossed, after ``max_turns`` model turns, when a final answer misses
``response_format`` twice, or when the provider fails past the node's retry policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Any, cast

import orjson

from app import faults
from app.domain.agent_nodes import AgentConfig
from app.domain.events import EventType
from app.domain.node_types import CORE_NODE_TYPES
from app.engine.run.context import NodeContext
from app.engine.run.outcomes import NodeOutput, Suspend
from app.errors import NodeError
from app.nodes import tool_spans
from app.nodes.agent import approvals
from app.nodes.agent.tools import (
    Call,
    Toolbox,
    ToolFailed,
    failure_text,
    must_stop,
    result_size_problem,
)
from app.nodes.ai import call_spans, model_calls
from app.nodes.ai.chat import ChatAnswer, ChatRequest, Message, OnText, parse_answer
from app.nodes.ai.failures import LlmAnswerInvalid
from app.nodes.ai.prices import price_table
from app.nodes.mcp_node import resolve_server, tool_lists
from app.nodes.mcp_tool_check import agent_tool_check
from app.nodes.plugin import NodeDefinition
from app.nodes.resources import NodeResources
from app.observability import semconv

RETRY_JSON = (
    "Your answer was refused: {problem}. Answer again, with the final answer only, in the "
    "required format."
)


class MaxTurnsExceeded(NodeError):
    """The model was still calling tools after ``max_turns`` turns."""

    code = "max_turns_exceeded"
    retryable = False


class AgentAnswerInvalid(NodeError):
    """The final answer missed ``response_format``, also when asked again."""

    code = "agent_answer_invalid"
    retryable = False


def definitions(resources: NodeResources) -> list[NodeDefinition]:
    """The ``agent`` node type (prices read now, as for ``llm``), with the check of its MCP
    tools against the servers' tool lists."""
    price_table(resources)
    check = agent_tool_check(
        lambda server: resolve_server(resources, server), tool_lists(resources)
    )
    return [NodeDefinition(CORE_NODE_TYPES["agent"], AgentExecutor(resources), check)]


@dataclass(slots=True)
class Transcript:
    """The conversation so far and what the node reports about it."""

    messages: list[Message]
    calls: list[dict[str, Any]] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0
    turns: int = 0

    def answered(self, recorded: dict[str, Any]) -> ChatAnswer:
        answer = ChatAnswer(**recorded["answer"])
        self.turns += 1
        self.input_tokens += answer.input_tokens
        self.output_tokens += answer.output_tokens
        cost = recorded["cost_usd"]
        self.cost_usd = None if cost is None or self.cost_usd is None else self.cost_usd + cost
        message: Message = {"role": "assistant", "content": answer.text}
        if answer.tool_calls:
            message["tool_calls"] = answer.tool_calls
        self.messages.append(message)
        return answer

    def details(self) -> dict[str, Any]:
        return {"turns": self.turns, "messages": self.messages, "tool_calls": self.calls}


class AgentExecutor:
    def __init__(self, resources: NodeResources) -> None:
        self._resources = resources

    async def execute(self, ctx: NodeContext) -> NodeOutput | Suspend:
        config = cast(AgentConfig, ctx.config)
        base = await model_calls.request_of(ctx, config, self._resources)
        key = await model_calls.stored_key(config, self._resources)
        with call_spans.agent(ctx.key, base):
            return await self._loop(ctx, config, base, key)

    async def _loop(
        self, ctx: NodeContext, config: AgentConfig, base: ChatRequest, key: str | None
    ) -> NodeOutput | Suspend:
        """Turns and tool calls until the model answers (see the module docstring)."""
        resources = self._resources
        max_turns = int(await ctx.render("max_turns"))
        timeout_s = float(await ctx.render("tool_timeout_s"))
        limit = resources.settings.max_node_output_bytes
        on_text = model_calls.capped(ctx.stream().write, limit) if config.stream else None
        toolbox = _Lazy(lambda: Toolbox.build(ctx, config, resources))
        transcript = Transcript(list(base.messages))
        asked_again = False
        for turn in range(1, max_turns + 1):
            step = f"turn-{turn}"
            turn_once = partial(
                self._turn, ctx, config, step, base, key, transcript, toolbox, on_text
            )
            recorded = await ctx.step(step, turn_once)
            answer = transcript.answered(recorded)
            if not answer.tool_calls:
                try:
                    return NodeOutput(_output(answer, config, transcript))
                except LlmAnswerInvalid as exc:
                    if asked_again or turn == max_turns:
                        raise AgentAnswerInvalid(str(exc), details=transcript.details()) from None
                    asked_again = True
                    problem = RETRY_JSON.format(problem=str(exc))
                    transcript.messages.append({"role": "user", "content": problem})
                    continue
            if turn == max_turns:
                break
            waiting = await self._calls(ctx, config, turn, answer, transcript, toolbox, timeout_s)
            if waiting is not None:
                return waiting
        raise MaxTurnsExceeded(
            f"the model still called tools after max_turns ({max_turns}) turns",
            details=transcript.details(),
        )

    async def _turn(
        self,
        ctx: NodeContext,
        config: AgentConfig,
        step: str,
        base: ChatRequest,
        key: str | None,
        transcript: Transcript,
        toolbox: _Lazy,
        on_text: OnText | None,
    ) -> dict[str, Any]:
        """One model turn over the transcript so far (the step's result)."""
        await faults.hit("agent.turn", ctx.execution_id, ctx.key, step)
        tools = await toolbox.get()
        request = replace(
            base,
            messages=tuple(transcript.messages),
            tools=tools.specs,
            parallel_tool_calls=config.parallel_tool_calls,
        )
        send = model_calls.sender(self._resources, request, ctx, key)
        answer, cost = await model_calls.paid_answer(ctx, self._resources, request, send, on_text)
        return {"answer": asdict(answer), "cost_usd": cost}

    async def _calls(
        self,
        ctx: NodeContext,
        config: AgentConfig,
        turn: int,
        answer: ChatAnswer,
        transcript: Transcript,
        toolbox: _Lazy,
        timeout_s: float,
    ) -> Suspend | None:
        """Run the turn's calls (together, unless the node says one at a time) and add their
        results to the transcript; the Suspend that waits for an approval first, if one is
        missing (approvals are asked one at a time, in call order)."""
        steps = [f"turn-{turn}/call-{index}" for index in range(len(answer.tool_calls))]
        pending = [not ctx.has_step(step) for step in steps]
        # The toolbox is built here, outside the calls' steps: a server that cannot list its
        # tools fails the attempt (its retry policy decides), it is no call's recorded error.
        tools = await toolbox.get() if any(pending) else Toolbox({})
        decisions: dict[int, dict[str, Any] | None] = dict.fromkeys(range(len(steps)))
        for index, call in enumerate(answer.tool_calls):
            step = steps[index]
            if not pending[index]:
                continue
            tool = tools.tools.get(call["name"])
            if tool is None or tool.approval is None or tool.problem(call["arguments"]):
                continue
            context = {"tool": call["name"], "arguments": call["arguments"]}
            decided = await approvals.decision(
                ctx, step, tool.approval, context | {"reasoning": answer.text}
            )
            if isinstance(decided, Suspend):
                return decided
            decisions[index] = decided
        runs = [
            partial(self._call, ctx, turn, index, call, decisions[index], tools, timeout_s)
            for index, call in enumerate(answer.tool_calls)
        ]
        if config.parallel_tool_calls:
            results = await _together([run() for run in runs])
        else:  # one after the other: a call that stops the node leaves the next ones unmade
            results = [await run() for run in runs]
        for call, result in zip(answer.tool_calls, results, strict=True):
            transcript.calls.append({"turn": turn, **call, **result})
            content = result["result"] if result["ok"] else f"error: {result['error']}"
            transcript.messages.append(
                {
                    "role": "tool",
                    "tool_call_id": call["id"],
                    "name": call["name"],
                    "content": content if isinstance(content, str) else _json(content),
                    "is_error": not result["ok"],
                }
            )
        return None

    async def _call(
        self,
        ctx: NodeContext,
        turn: int,
        index: int,
        call: dict[str, Any],
        decision: dict[str, Any] | None,
        tools: Toolbox,
        timeout_s: float,
    ) -> dict[str, Any]:
        """One call as a durable step: ``{"ok", "result" | "error", "approved_by"?}``."""
        step = f"turn-{turn}/call-{index}"
        event = {"node_id": ctx.key, "turn": turn, "call_id": call["id"]}
        limit = self._resources.settings.max_node_output_bytes

        settings = self._resources.settings
        tool = tools.tools.get(call["name"])
        tool_type = tool.type if tool is not None else semconv.TOOL_TYPE_FUNCTION

        async def run() -> dict[str, Any]:
            ctx.log_event(
                EventType.AGENT_TOOL_CALL,
                {**event, "name": call["name"], "arguments": call["arguments"]},
            )
            outcome: dict[str, Any]
            approved_by = {"approved_by": decision["by"]} if decision is not None else {}
            try:
                with tool_spans.execute_tool(
                    call["name"],
                    tool_type,
                    settings,
                    arguments=call["arguments"],
                    call_id=call["id"],
                ) as span:
                    result = await self._run(ctx, step, call, decision, tools, timeout_s)
                    problem = result_size_problem(result, limit)
                    if problem is not None:
                        raise ToolFailed(problem)
                    tool_spans.returned(span, result, settings)
                outcome = {"ok": True, "result": result, **approved_by}
            except Exception as exc:
                if must_stop(exc):
                    raise
                outcome = {"ok": False, "error": failure_text(exc), **approved_by}
            result_event = {**event, "ok": outcome["ok"], **approved_by}
            ctx.log_event(EventType.AGENT_TOOL_RESULT, result_event)
            return outcome

        recorded: dict[str, Any] = await ctx.step(step, run)
        return recorded

    async def _run(
        self,
        ctx: NodeContext,
        step: str,
        call: dict[str, Any],
        decision: dict[str, Any] | None,
        tools: Toolbox,
        timeout_s: float,
    ) -> Any:
        tool = tools.tools.get(call["name"])
        if tool is None:
            known = ", ".join(sorted(tools.tools)) or "none"
            raise ToolFailed(f"there is no tool {call['name']!r} (the tools: {known})")
        problem = tool.problem(call["arguments"])
        if problem is not None:
            raise ToolFailed(problem)
        if decision is not None and not decision["approved"]:
            why = "nobody approved it in time" if decision["timed_out"] else "people rejected it"
            comment = f" ({decision['comment']})" if decision.get("comment") else ""
            raise ToolFailed(f"the call was refused: {why}{comment}")
        key = f"{ctx.idempotency_key}/{step}"
        return await tool.run(ctx, Call(call["arguments"], key, f"{ctx.key}.{step}."), timeout_s)


class _Lazy:
    """The toolbox, built once by the first turn or call that needs it."""

    def __init__(self, build: Callable[[], Awaitable[Toolbox]]) -> None:
        self._build = build
        self._toolbox: Toolbox | None = None

    async def get(self) -> Toolbox:
        if self._toolbox is None:
            self._toolbox = await self._build()
        return self._toolbox


async def _together(runs: Sequence[Awaitable[dict[str, Any]]]) -> list[dict[str, Any]]:
    """All the calls at once; the first that must stop the node stops the others too."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_awaited(run)) for run in runs]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


async def _awaited(run: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    return await run


def _output(answer: ChatAnswer, config: AgentConfig, transcript: Transcript) -> dict[str, Any]:
    """The node's output (LlmAnswerInvalid when the final answer misses ``response_format``)."""
    output: dict[str, Any] = {"text": answer.text}
    if config.wants_json:
        output["json"] = parse_answer(answer.text, config.response_format)
    return output | {
        "turns": transcript.turns,
        "tool_calls": transcript.calls,
        "messages": transcript.messages,
        "usage": {
            "input_tokens": transcript.input_tokens,
            "output_tokens": transcript.output_tokens,
        },
        "cost_usd": transcript.cost_usd,
        "finish_reason": answer.finish_reason,
    }


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()
