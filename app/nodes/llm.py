"""The ``llm`` node: one call to a language model (OpenAI or an OpenAI-compatible server,
Anthropic, Ollama), its tokens streamed as ``node.token`` events.

Every attempt is one outbound call (``limits.max_api_calls``), waits for the provider's gate
(``OXIFY_LLM_LIMITS``) and reports its tokens (``limits.max_tokens``). Identical requests are
answered from the process's cache (``cached: true``, no call, cost 0). Provider keys never reach
events, outputs or errors.
"""

from __future__ import annotations

from typing import Any, cast

from app.domain.ai_nodes import LlmConfig
from app.domain.node_types import CORE_NODE_TYPES
from app.engine.run.context import NodeContext
from app.engine.run.outcomes import NodeOutput
from app.errors import NodeConfigError
from app.nodes.ai import chat_anthropic, chat_ollama, chat_openai, failures
from app.nodes.ai.cache import AnswerCache, answer_cache
from app.nodes.ai.chat import ChatAnswer, ChatRequest, OnText, parse_answer
from app.nodes.ai.clients import anthropic_client, api_root, openai_client, secrets_of
from app.nodes.ai.prices import price_table
from app.nodes.ai.throttle import gate
from app.nodes.plugin import NodeDefinition
from app.nodes.resources import NodeResources


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
        ctx.spend(api_calls=1)
        answer = await self._call(request, ctx.stream().write if config.stream else None, ctx)
        cost = price_table(self._resources).cost(
            request.provider, answer.model, answer.input_tokens, answer.output_tokens
        )
        ctx.spend(tokens=answer.input_tokens + answer.output_tokens, cost_usd=cost or 0.0)
        output = _output(answer, config, cost=cost, cached=False)
        if key is not None:  # only an answer that passed the checks is served again
            cache.put(key, answer)
        return NodeOutput(output)

    async def _call(
        self, request: ChatRequest, on_text: OnText | None, ctx: NodeContext
    ) -> ChatAnswer:
        resources = self._resources
        secrets = secrets_of(resources)
        now = ctx.clock.now
        try:
            async with gate(resources, request.provider).turn():
                if request.provider == "openai":
                    client = openai_client(resources, request.root)
                    return await chat_openai.chat(client, request, on_text)
                if request.provider == "anthropic":
                    claude = anthropic_client(resources, request.root)
                    return await chat_anthropic.chat(claude, request, on_text)
                return await chat_ollama.chat(
                    resources.http,
                    request,
                    on_text,
                    timeout_s=resources.settings.llm_timeout_s,
                    status_error=lambda status, message, headers: failures.status_error(
                        "ollama", status, message, headers, secrets=secrets, now=now
                    ),
                )
        except Exception as exc:
            error = failures.provider_error(request.provider, exc, secrets=secrets, now=now)
            if error is None:
                raise
            raise error from None

    async def _request(self, ctx: NodeContext, config: LlmConfig) -> ChatRequest:
        root = api_root(self._resources, config.provider, await ctx.render("base_url"))
        if config.prompt is not None:
            messages: tuple[tuple[str, str], ...] = (
                ("user", _text(await ctx.render("prompt"), "prompt")),
            )
        else:
            rendered = await ctx.render("messages")
            messages = tuple(
                (str(m["role"]), _text(m["content"], f"messages/{i}/content"))
                for i, m in enumerate(rendered)
            )
        system = await ctx.render("system")
        stop = await ctx.render("stop")
        return ChatRequest(
            provider=config.provider,
            root=root,
            model=_text(await ctx.render("model"), "model"),
            system=_text(system, "system") if system is not None else None,
            messages=messages,
            temperature=await ctx.render("temperature"),
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


def _text(value: Any, field: str) -> str:
    """A rendered field that must be text (a template may have produced something else)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float | bool) or value is None:
        return "" if value is None else str(value)
    raise NodeConfigError(f"config field {field!r} must render to text, not {type(value).__name__}")
