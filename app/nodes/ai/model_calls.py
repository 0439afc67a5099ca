"""A model call as the ``llm`` and ``agent`` nodes make it: the request rendered from the node's
config, and the sender that puts it through the provider's gate and client, bounded by
``OXIFY_LLM_TIMEOUT_S``, its failures as node errors without secrets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from app.domain.ai_nodes import LlmConfig, LlmMessage, ModelCallConfig
from app.engine.run.context import NodeContext
from app.errors import NodeConfigError
from app.nodes import credentials
from app.nodes.ai import call_spans, chat_anthropic, chat_ollama, chat_openai, failures
from app.nodes.ai.chat import ChatAnswer, ChatRequest, Message, OnText
from app.nodes.ai.clients import anthropic_client, api_root, openai_client, secrets_of
from app.nodes.ai.failures import LlmAnswerInvalid
from app.nodes.ai.prices import price_table
from app.nodes.ai.throttle import gate
from app.nodes.resources import NodeResources

Send = Callable[[OnText | None], Awaitable[ChatAnswer]]


async def request_of(
    ctx: NodeContext, config: ModelCallConfig, resources: NodeResources
) -> ChatRequest:
    """The node's model call, rendered (without tools: an agent adds its own)."""
    root = api_root(resources, config.provider, await ctx.render("base_url"))
    if config.prompt is not None:
        messages: tuple[Message, ...] = (
            {"role": "user", "content": text(await ctx.render("prompt"), "prompt")},
        )
    else:
        rendered = await ctx.render("messages")
        messages = tuple(_message(m, i) for i, m in enumerate(rendered))
    system = await ctx.render("system")
    stop = await ctx.render("stop") if isinstance(config, LlmConfig) else None
    temperature = await ctx.render("temperature")
    if config.provider == "anthropic" and temperature is not None and temperature > 1:
        raise NodeConfigError("anthropic takes a temperature between 0 and 1")
    return ChatRequest(
        provider=config.provider,
        root=root,
        model=text(await ctx.render("model"), "model"),
        system=text(system, "system") if system is not None else None,
        messages=messages,
        temperature=temperature,
        max_tokens=await ctx.render("max_tokens"),
        stop=tuple(text(s, "stop") for s in stop) if stop else None,
        response_format=config.response_format,
    )


async def stored_key(config: ModelCallConfig, resources: NodeResources) -> str | None:
    """The provider key of the stored credential the node names (``credential``), or None for
    the deployment's. The key goes to the provider's client only: never into the request that
    is rendered, cached, journaled or traced."""
    if config.credential is None:
        return None
    if config.provider == "ollama":
        raise NodeConfigError("'credential': ollama takes no key (openai and anthropic do)")
    found = await credentials.resolve(resources, config.credential)
    if found.kind == "basic":
        raise NodeConfigError(
            f"credential {found.name!r} is a basic credential: a provider key is one value "
            "(store it as secret, bearer or api_key)"
        )
    return found.value


def sender(
    resources: NodeResources, request: ChatRequest, ctx: NodeContext, key: str | None = None
) -> Send:
    """The call to the provider: through the provider's gate, bounded as a whole by
    ``OXIFY_LLM_TIMEOUT_S``, failures as node errors without secrets, in a ``chat`` span. A
    config error (an unknown provider root) shows here, before a call is counted. ``key``: a
    stored credential's key (:func:`stored_key`), else the deployment's."""
    secrets = [*secrets_of(resources), *([key] if key is not None else [])]
    now = ctx.clock.now
    timeout_s = resources.settings.llm_timeout_s
    call: Send
    if request.provider == "openai":
        client = openai_client(resources, request.root, key)
        call = partial(chat_openai.chat, client, request)
    elif request.provider == "anthropic":
        claude = anthropic_client(resources, request.root, key)
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

    meter = resources.meter

    async def sent(on_text: OnText | None) -> ChatAnswer:
        try:
            async with gate(resources, request.provider).turn():
                async with asyncio.timeout(timeout_s):
                    if on_text is not None:
                        on_text = _first_timed(on_text, request, meter.first_token)
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

    async def send(on_text: OnText | None) -> ChatAnswer:
        with call_spans.chat(request, resources.settings) as span:
            answer = await sent(on_text)
            call_spans.answered(span, answer, resources.settings)
            return answer

    return send


async def paid_answer(
    ctx: NodeContext,
    resources: NodeResources,
    request: ChatRequest,
    send: Send,
    on_text: OnText | None,
) -> tuple[ChatAnswer, float | None]:
    """One call sent: counted as an api call before it goes, its tokens and price (None: the
    model has no price) counted once it answered. A call the run's tokens/day quota has no
    room for is refused before it goes (``quota_exhausted``)."""
    await resources.token_quota.admit(ctx.execution_id)
    ctx.spend(api_calls=1)
    answer = await send(on_text)
    cost = price_table(resources).cost(
        request.provider, answer.model, answer.input_tokens, answer.output_tokens
    )
    tokens = answer.input_tokens + answer.output_tokens
    await resources.token_quota.charge(ctx.execution_id, tokens)
    ctx.spend(tokens=tokens, cost_usd=cost)
    resources.meter.llm_call(
        request.provider,
        request.model,
        input_tokens=answer.input_tokens,
        output_tokens=answer.output_tokens,
        cost_usd=cost,
    )
    return answer, cost


def _first_timed(
    write: OnText, request: ChatRequest, report: Callable[[str, str, float], None]
) -> OnText:
    """``write``, reporting how long after now the first text came (time to first token)."""
    sent = time.perf_counter()
    waiting = True

    def timed(piece: str) -> None:
        nonlocal waiting
        if waiting:
            waiting = False
            report(request.provider, request.model, time.perf_counter() - sent)
        write(piece)

    return timed


def capped(write: OnText, limit: int) -> OnText:
    """``write``, refusing text past ``limit`` bytes: a model that never stops is cut off
    while it streams, not once its answer fills memory."""
    written = 0

    def capped_write(piece: str) -> None:
        nonlocal written
        written += len(piece.encode())
        if written > limit:
            raise LlmAnswerInvalid(
                f"the model's answer is larger than OXIFY_MAX_NODE_OUTPUT_BYTES ({limit} bytes)",
                retryable=False,
                details={"reason": "too_large"},
            )
        write(piece)

    return capped_write


def _message(rendered: Any, index: int) -> Message:
    """A rendered ``messages`` item (the config's model, or the mapping a template gave)."""
    if isinstance(rendered, LlmMessage):
        role, content = rendered.role, rendered.content
    else:
        role, content = rendered.get("role"), rendered.get("content")
    return {"role": str(role), "content": text(content, f"messages/{index}/content")}


def text(value: Any, field: str) -> str:
    """A rendered field that must be text (a template may have produced something else)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float | bool) or value is None:
        return "" if value is None else str(value)
    raise NodeConfigError(f"config field {field!r} must render to text, not {type(value).__name__}")
