"""The ``llm`` node: one call to a language model (OpenAI or an OpenAI-compatible server,
Anthropic, Ollama), its tokens streamed as ``node.token`` events.

Every attempt is one outbound call (``limits.max_api_calls``), waits for the provider's gate
(``OXIFY_LLM_LIMITS``) and reports its tokens (``limits.max_tokens``). Identical requests are
answered from the process's cache (``cached: true``, no call, cost 0). Provider keys never reach
events, outputs or errors.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Final, cast

from app.domain.ai_nodes import LlmConfig
from app.domain.node_types import CORE_NODE_TYPES
from app.engine.run.context import NodeContext
from app.engine.run.outcomes import NodeOutput
from app.nodes.ai import call_spans, model_calls
from app.nodes.ai.cache import AnswerCache, answer_cache
from app.nodes.ai.chat import ChatAnswer, parse_answer
from app.nodes.ai.prices import price_table
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
        request = await model_calls.request_of(ctx, config, self._resources)
        key = await model_calls.stored_key(config, self._resources)
        cache = answer_cache(self._resources, "llm")
        cache_key = AnswerCache.key(request.identity(), provider_key=key) if config.cache else None
        cached: ChatAnswer | None = cache.get(cache_key) if cache_key is not None else None
        if cached is not None:
            call_spans.cached(request, cached, self._resources.settings)
            if config.stream and cached.text:
                ctx.stream().write(cached.text)
            return NodeOutput(_output(cached, config, cost=0.0, cached=True))
        send = model_calls.sender(self._resources, request, ctx, key)
        limit = self._resources.settings.max_node_output_bytes
        on_text = model_calls.capped(ctx.stream().write, limit) if config.stream else None

        async def answer_once() -> dict[str, Any]:
            answer, cost = await model_calls.paid_answer(
                ctx, self._resources, request, send, on_text
            )
            if config.wants_json:  # a bad answer raises: the step is not kept, a retry asks again
                parse_answer(answer.text, config.response_format)
            return {"answer": asdict(answer), "cost_usd": cost}

        # The answer is a durable step: a run continued after a crash or a takeover gets it back
        # instead of paying for it again, whatever the run's checkpoint policy.
        recorded = await ctx.step(ANSWER_STEP, answer_once)
        answer = ChatAnswer(**recorded["answer"])
        output = _output(answer, config, cost=recorded["cost_usd"], cached=False)
        if cache_key is not None:  # only an answer that passed the checks is served again
            cache.put(cache_key, answer)
        return NodeOutput(output)


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
