"""Texts into vectors: OpenAI(-compatible) ``/v1/embeddings`` and Ollama ``/api/embed``.

Shared by the retrieval nodes and the agent. Identical texts are embedded once per process for
a while (the ``embeddings`` answer cache, keyed by provider, API root, model, dimensions and
text); the rest go out in batches, each batch one outbound call: counted against
``limits.max_api_calls`` before it is made, through the provider's gate, its failures mapped to
retryable or final node errors like the ``llm`` node's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from pydantic import ValidationError

from app.domain.ai_nodes import EmbedderSpec
from app.engine.run.context import NodeContext
from app.errors import NodeConfigError
from app.nodes.ai import call_spans, failures
from app.nodes.ai.cache import AnswerCache, answer_cache
from app.nodes.ai.clients import api_root, openai_client, secrets_of
from app.nodes.ai.throttle import gate
from app.nodes.resources import NodeResources

BATCH_SIZE = 256  # texts per request: well within OpenAI's 2,048 inputs and Ollama's defaults

Vector = list[float]


def embedder_of(resources: NodeResources, rendered: Any) -> EmbedderSpec:
    """The node's rendered ``embedder`` (its strings may be templates: ``"base_url": "{{
    inputs.models }}"``), else the deployment's (``OXIFY_EMBEDDER``); neither is an error."""
    spec = rendered
    if isinstance(rendered, dict):
        try:
            spec = EmbedderSpec.model_validate(rendered)
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = "/".join(str(p) for p in problem["loc"])
            raise NodeConfigError(f"config field 'embedder/{where}': {problem['msg']}") from None
    chosen = spec if spec is not None else resources.settings.embedder
    if chosen is None:
        raise NodeConfigError(
            "no embedder: give the node an 'embedder' "
            '({"provider": "openai" | "ollama", "model": …}) or set OXIFY_EMBEDDER'
        )
    return chosen


async def embed(
    resources: NodeResources, ctx: NodeContext, spec: EmbedderSpec, texts: Sequence[str]
) -> list[Vector]:
    """One vector per text, in order; cached ones without a call."""
    root = api_root(resources, spec.provider, spec.base_url)
    cache = answer_cache(resources, "embeddings")
    identity = {
        "provider": spec.provider,
        "root": root,
        "model": spec.model,
        "dimensions": spec.dimensions,
    }
    keys = [AnswerCache.key({**identity, "text": text}) for text in texts]
    found: dict[str, Vector] = {}
    missing: dict[str, str] = {}  # key -> text, each distinct text once
    for key, text in zip(keys, texts, strict=True):
        if key in found or key in missing:
            continue
        vector = cache.get(key)
        if vector is None:
            missing[key] = text
        else:
            found[key] = vector
    pending = list(missing.items())
    for start in range(0, len(pending), BATCH_SIZE):
        batch = pending[start : start + BATCH_SIZE]
        vectors = await _request(resources, ctx, spec, root, [text for _, text in batch])
        for (key, _), vector in zip(batch, vectors, strict=True):
            cache.put(key, vector)
            found[key] = vector
    return [found[key] for key in keys]


async def _request(
    resources: NodeResources, ctx: NodeContext, spec: EmbedderSpec, root: str, texts: list[str]
) -> list[Vector]:
    secrets = secrets_of(resources)
    now = ctx.clock.now
    ctx.spend(api_calls=1)
    with call_spans.embeddings(spec, root) as span:
        try:
            async with gate(resources, spec.provider).turn():
                if spec.provider == "openai":
                    vectors, tokens = await _openai(resources, spec, root, texts)
                else:
                    vectors, tokens = await _ollama(resources, spec, root, texts, secrets, ctx)
        except Exception as exc:
            error = failures.provider_error(spec.provider, exc, secrets=secrets, now=now)
            if error is None:
                raise
            raise error from None
        if len(vectors) != len(texts) or any(len(v) != len(vectors[0]) for v in vectors):
            raise failures.LlmProviderError(
                f"{spec.provider} answered {len(vectors)} embeddings of uneven or wrong count "
                f"for {len(texts)} texts",
                retryable=False,
                details={"provider": spec.provider},
            )
        call_spans.embedded(span, len(vectors[0]) if vectors else None, tokens)
    return vectors


async def _openai(
    resources: NodeResources, spec: EmbedderSpec, root: str, texts: list[str]
) -> tuple[list[Vector], int | None]:
    """The vectors, and the input tokens the provider counted (when it says)."""
    client = openai_client(resources, root)
    options: dict[str, Any] = {}
    if spec.dimensions is not None:
        options["dimensions"] = spec.dimensions
    # The SDK asks for base64 and decodes it with NumPy: parsing JSON floats into its models
    # costs ~1 s per 200,000 numbers. A server answering floats anyway still works.
    answer = await client.embeddings.create(model=spec.model, input=texts, **options)
    vectors = [list(item.embedding) for item in sorted(answer.data, key=lambda item: item.index)]
    usage = getattr(answer, "usage", None)  # the SDK does not insist on it: a server may omit it
    return vectors, usage.prompt_tokens if usage is not None else None


async def _ollama(
    resources: NodeResources,
    spec: EmbedderSpec,
    root: str,
    texts: list[str],
    secrets: list[str],
    ctx: NodeContext,
) -> tuple[list[Vector], int | None]:
    body: dict[str, Any] = {"model": spec.model, "input": texts}
    if spec.dimensions is not None:
        body["dimensions"] = spec.dimensions
    timeout_s = resources.settings.llm_timeout_s
    async with resources.http.stream(
        "POST", f"{root}/api/embed", json=body, timeout=timeout_s
    ) as response:  # streamed: an error body is read only so far (failures.read_error_text)
        if response.status_code != 200:
            raise failures.status_error(
                "ollama",
                response.status_code,
                await failures.read_error_text(response),
                response.headers,
                secrets=secrets,
                now=ctx.clock.now,
            )
        content = await response.aread()
    try:
        answer = orjson.loads(content)
        embeddings = answer.get("embeddings")
    except (orjson.JSONDecodeError, AttributeError):
        answer, embeddings = {}, None
    if not isinstance(embeddings, list) or not all(map(_numbers, embeddings)):
        raise failures.LlmProviderError(
            "ollama answered without 'embeddings' (lists of numbers)",
            retryable=False,
            details={"provider": "ollama"},
        )
    tokens = answer.get("prompt_eval_count")
    vectors = [[float(x) for x in vector] for vector in embeddings]
    return vectors, tokens if isinstance(tokens, int) else None


def _numbers(vector: Any) -> bool:
    return isinstance(vector, list) and all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in vector
    )
