"""The ``llm`` node: one call to a language model (OpenAI or an OpenAI-compatible server,
Anthropic, Ollama), its tokens streamed as ``node.token`` events.

Every attempt is one outbound call (``limits.max_api_calls``), waits for the provider's gate
(``OXIFY_LLM_LIMITS``) and reports its tokens (``limits.max_tokens``). Identical requests are
answered from the process's cache (``cached: true``, no call, cost 0). Provider keys never reach
events, outputs or errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from functools import partial
from typing import Any, Final, cast

from app.domain.ai_nodes import LlmConfig, LlmMessage
from app.domain.node_types import CORE_NODE_TYPES
from app.engine.run.context import NodeContext
from app.engine.run.outcomes import NodeOutput
from app.errors import NodeConfigError
from app.nodes.ai import chat_anthropic, chat_ollama, chat_openai, failures
from app.nodes.ai.cache import AnswerCache, answer_cache
from app.nodes.ai.chat import ChatAnswer, ChatRequest, OnText, parse_answer
from app.nodes.ai.clients import anthropic_client, api_root, openai_client, secrets_of
from app.nodes.ai.failures import LlmAnswerInvalid
from app.nodes.ai.prices import price_table
from app.nodes.ai.throttle import gate
from app.nodes.plugin import NodeDefinition
from app.nodes.resources import NodeResources

ANSWER_STEP: Final = "answer"  # the durable step that holds the provider's answer


def definitions(resources: NodeResources) -> list[NodeDefinition]:
    """The ``llm`` node type. The price table is read now, so a broken
    ``OXIFY_LLM_PRICING_FILE`` stops the start instead of the first call."""
    price_table(resources)
    return [NodeDefinition(CORE_NODE_TYPES["llm"], LlmExecutor(resources))]


class LlmExecutor:
    def __init__(self, resources: NodeResources) -> None:
        self._resources = resources

    async def execute(self, ctx: NodeContext) -> NodeOutput:
        config = cast(LlmConfig, ctx.config)
        request = await self._request(ctx, config)
        cache = answer_cache(self._resources, "llm")
        key = AnswerCache.key(request.identity()) if config.cache else None
        cached: ChatAnswer | None = cache.get(key) if key is not None else None
        if cached is not None:
            if config.stream and cached.text:
                ctx.stream().write(cached.text)
            return NodeOutput(_output(cached, config, cost=0.0, cached=True))
        send = self._sender(request, ctx)  # a config error shows here, before a call is counted
        limit = self._resources.settings.max_node_output_bytes
        on_text = _capped(ctx.stream().write, limit) if config.stream else None

        async def answer_once() -> dict[str, Any]:
            ctx.spend(api_calls=1)
            answer = await send(on_text)
            cost = price_table(self._resources).cost(
                request.provider, answer.model, answer.input_tokens, answer.output_tokens
            )
            ctx.spend(tokens=answer.input_tokens + answer.output_tokens, cost_usd=cost)
            if config.wants_json:  # a bad answer raises: the step is not kept, a retry asks again
                parse_answer(answer.text, config.response_format)
            return {"answer": asdict(answer), "cost_usd": cost}

        # The answer is a durable step: a run continued after a crash or a takeover gets it back
        # instead of paying for it again, whatever the run's checkpoint policy.
        recorded = await ctx.step(ANSWER_STEP, answer_once)
        answer = ChatAnswer(**recorded["answer"])
        output = _output(answer, config, cost=recorded["cost_usd"], cached=False)
        if key is not None:  # only an answer that passed the checks is served again
            cache.put(key, answer)
        return NodeOutput(output)

    def _sender(
        self, request: ChatRequest, ctx: NodeContext
    ) -> Callable[[OnText | None], Awaitable[ChatAnswer]]:
        """The call to the provider: through the provider's gate, bounded as a whole by
        ``OXIFY_LLM_TIMEOUT_S``, failures as node errors without secrets."""
        resources = self._resources
        secrets = secrets_of(resources)
        now = ctx.clock.now
        timeout_s = resources.settings.llm_timeout_s
        call: Callable[[OnText | None], Awaitable[ChatAnswer]]
        if request.provider == "openai":
            client = openai_client(resources, request.root)
            call = partial(chat_openai.chat, client, request)
        elif request.provider == "anthropic":
            claude = anthropic_client(resources, request.root)
            call = partial(chat_anthropic.chat, claude, request)
        else:
            call = partial(
                chat_ollama.chat,
                resources.http,
                request,
                timeout_s=timeout_s,
                status_error=lambda status, message, headers: failures.status_error(
                    "ollama", status, message, headers, secrets=secrets, now=now
                ),
            )

        async def send(on_text: OnText | None) -> ChatAnswer:
            try:
                async with gate(resources, request.provider).turn():
                    async with asyncio.timeout(timeout_s):
                        return await call(on_text)
            except TimeoutError:
                raise failures.LlmTransportError(
                    f"{request.provider} did not finish answering within {timeout_s:g} s",
                    details={"provider": request.provider},
                ) from None
            except Exception as exc:
                error = failures.provider_error(request.provider, exc, secrets=secrets, now=now)
                if error is None:
                    raise
                raise error from None

        return send

    async def _request(self, ctx: NodeContext, config: LlmConfig) -> ChatRequest:
        root = api_root(self._resources, config.provider, await ctx.render("base_url"))
        if config.prompt is not None:
            messages: tuple[tuple[str, str], ...] = (
                ("user", _text(await ctx.render("prompt"), "prompt")),
            )
        else:
            rendered = await ctx.render("messages")
            messages = tuple(_message(m, i) for i, m in enumerate(rendered))
        system = await ctx.render("system")
        stop = await ctx.render("stop")
        temperature = await ctx.render("temperature")
        if config.provider == "anthropic" and temperature is not None and temperature > 1:
            raise NodeConfigError("anthropic takes a temperature between 0 and 1")
        return ChatRequest(
            provider=config.provider,
            root=root,
            model=_text(await ctx.render("model"), "model"),
            system=_text(system, "system") if system is not None else None,
            messages=messages,
            temperature=temperature,
            max_tokens=await ctx.render("max_tokens"),
            stop=tuple(_text(s, "stop") for s in stop) if stop else None,
            response_format=config.response_format,
        )


def _output(
    answer: ChatAnswer, config: LlmConfig, *, cost: float | None, cached: bool
) -> dict[str, Any]:
    output: dict[str, Any] = {"text": answer.text}
    if config.wants_json:
        output["json"] = parse_answer(answer.text, config.response_format)
    used = (0, 0) if cached else (answer.input_tokens, answer.output_tokens)
    output |= {
        "model": answer.model,
        "usage": {"input_tokens": used[0], "output_tokens": used[1]},
        "cost_usd": cost,
        "finish_reason": answer.finish_reason,
        "cached": cached,
    }
    return output


def _capped(write: OnText, limit: int) -> OnText:
    """``write``, refusing text past ``limit`` bytes: a model that never stops is cut off
    while it streams, not once its answer fills memory."""
    written = 0

    def capped(text: str) -> None:
        nonlocal written
        written += len(text.encode())
        if written > limit:
            raise LlmAnswerInvalid(
                f"the model's answer is larger than OXIFY_MAX_NODE_OUTPUT_BYTES ({limit} bytes)",
                retryable=False,
                details={"reason": "too_large"},
            )
        write(text)

    return capped


def _message(rendered: Any, index: int) -> tuple[str, str]:
    """A rendered ``messages`` item (the config's model, or the mapping a template gave)."""
    if isinstance(rendered, LlmMessage):
        role, content = rendered.role, rendered.content
    else:
        role, content = rendered.get("role"), rendered.get("content")
    return str(role), _text(content, f"messages/{index}/content")


def _text(value: Any, field: str) -> str:
    """A rendered field that must be text (a template may have produced something else)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float | bool) or value is None:
        return "" if value is None else str(value)
    raise NodeConfigError(f"config field {field!r} must render to text, not {type(value).__name__}")
