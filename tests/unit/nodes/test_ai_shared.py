"""What the AI nodes share: the per-provider gate, the answer cache, the price table."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from app.auth import context, principal
from app.nodes.ai.cache import AnswerCache
from app.nodes.ai.prices import PriceTable, load_prices
from app.nodes.ai.throttle import ProviderGate, gate
from app.nodes.resources import NodeResources
from app.settings import Settings


async def test_the_gate_lets_no_more_calls_through_than_its_concurrency() -> None:
    shared = ProviderGate(concurrency=1, rpm=None)
    inside = asyncio.Event()
    leave = asyncio.Event()

    async def first() -> None:
        async with shared.turn():
            inside.set()
            await leave.wait()

    holder = asyncio.create_task(first())
    await inside.wait()
    second_entered = asyncio.Event()

    async def second() -> None:
        async with shared.turn():
            second_entered.set()

    waiter = asyncio.create_task(second())
    for _ in range(5):
        await asyncio.sleep(0)  # let it try: it must still be waiting
    assert not second_entered.is_set()
    leave.set()
    await asyncio.gather(holder, waiter)
    assert second_entered.is_set()


async def test_the_gate_holds_a_call_beyond_the_rate() -> None:
    shared = ProviderGate(concurrency=10, rpm=2)
    for _ in range(2):
        async with shared.turn():
            pass
    third = asyncio.create_task(shared.turn().__aenter__())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not third.done()  # a third request within the minute waits for the bucket
    third.cancel()


async def test_one_gate_per_provider_from_the_settings() -> None:
    settings = Settings(
        database_url="sqlite+aiosqlite:///:memory:",
        llm_limits={"openai": {"concurrency": 2, "rpm": 100}},
    )
    async with NodeResources(settings=settings) as resources:
        assert gate(resources, "openai") is gate(resources, "openai")
        assert gate(resources, "openai") is not gate(resources, "ollama")
        assert settings.provider_limits("ollama").concurrency == 16


def test_the_cache_forgets_after_its_ttl_and_beyond_its_size() -> None:
    now = [0.0]
    cache = AnswerCache(size=2, ttl_s=10, timer=lambda: now[0])
    keys = [AnswerCache.key({"model": "m", "prompt": p}) for p in "abc"]
    assert AnswerCache.key({"prompt": "a", "model": "m"}) == keys[0]  # key order is irrelevant
    cache.put(keys[0], "A")
    cache.put(keys[1], "B")
    assert cache.get(keys[0]) == "A"
    cache.put(keys[2], "C")  # the least recently used (B) goes
    assert cache.get(keys[1]) is None and cache.get(keys[2]) == "C"
    now[0] = 11
    assert cache.get(keys[0]) is None
    assert (cache.hits, cache.misses) == (2, 2)


def test_a_cached_answer_belongs_to_its_project_and_to_the_key_that_paid_for_it() -> None:
    request = {"model": "m", "prompt": "p"}

    def key_in(project: str, provider_key: str | None = None) -> str:
        token = context.bind(context.RequestContext(principal.of_run("run-1", project)))
        try:
            return AnswerCache.key(request, provider_key=provider_key)
        finally:
            context.reset(token)

    assert key_in("alpha") == key_in("alpha")
    assert key_in("alpha") != key_in("beta")  # no answer (nor its timing) crosses projects
    assert key_in("alpha", "sk-one") != key_in("alpha", "sk-two") != key_in("alpha")
    assert "sk-one" not in key_in("alpha", "sk-one")


def test_a_cache_of_size_zero_keeps_nothing() -> None:
    cache = AnswerCache(size=0, ttl_s=10)
    cache.put("k", "v")
    assert cache.get("k") is None


def test_prices_by_exact_name_or_snapshot_then_wildcard(
    caplog: pytest.LogCaptureFixture,
) -> None:
    table = PriceTable(load_prices(None), logging.getLogger("test"))
    assert table.cost("openai", "gpt-4o", 1_000_000, 0) == 2.5
    # A dated snapshot of gpt-4o-mini is priced as gpt-4o-mini, not as gpt-4o.
    assert table.cost("openai", "gpt-4o-mini-2024-07-18", 1_000_000, 1_000_000) == 0.75
    assert table.cost("anthropic", "claude-3-5-haiku-20241022", 1_000_000, 0) == 0.8
    assert table.cost("anthropic", "claude-3-5-haiku-latest", 1_000_000, 0) == 0.8
    assert table.cost("ollama", "llama3.2", 10**9, 10**9) == 0.0
    # A name that merely starts like a known one is another model: no price, not a guess.
    assert table.price("openai", "gpt-5-pro") is None
    assert table.price("openai", "gpt-4o-audio-preview") is None
    with caplog.at_level(logging.WARNING):
        assert table.cost("anthropic", "claude-unknown", 1, 1) is None
        assert table.cost("anthropic", "claude-unknown", 1, 1) is None
    assert caplog.text.count("no price for anthropic model 'claude-unknown'") == 1


def test_a_price_file_is_merged_over_the_packaged_table(tmp_path: Path) -> None:
    override = tmp_path / "prices.json"
    override.write_text(
        json.dumps(
            {
                "providers": {
                    "openai": {"gpt-4o": {"input": 1, "output": 2}, "ft": {"input": 3, "output": 4}}
                }
            }
        )
    )
    prices = load_prices(override)
    assert prices["openai"]["gpt-4o"].input == 1 and prices["openai"]["ft"].output == 4
    assert prices["openai"]["gpt-4o-mini"].input == 0.15  # the rest stays
    override.write_text('{"providers": {"openai": {"x": {"input": -1, "output": 0}}}}')
    with pytest.raises(ValueError, match="OXIFY_LLM_PRICING_FILE"):
        load_prices(override)
