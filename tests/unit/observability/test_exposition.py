"""The fast text exposition writes what prometheus_client's generate_latest writes."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from app.observability import metrics  # noqa: F401  (as the app runs: without _created series)
from app.observability.exposition import CHUNK, TextExposition


class _Custom:
    def collect(self) -> Any:
        yield GaugeMetricFamily("custom_gauge", "Read when scraped.", value=3)


def _families(text: bytes) -> dict[str, Any]:
    return {
        family.name: (
            family.type,
            family.documentation,
            sorted((s.name, sorted(s.labels.items()), s.value) for s in family.samples),
        )
        for family in text_string_to_metric_families(text.decode())
        if not family.name.startswith("process_")  # CPU time moves between two renders
    }


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    requests = Counter("t_requests", "Requests.", ["route", "status"], registry=registry)
    requests.labels('/a "quoted"\\path\nnew', "200").inc(3)
    requests.labels("/b", "500").inc()
    Counter("t_plain", "No labels.", registry=registry).inc(2.5)
    ProcessCollector(registry=registry)
    registry.register(_Custom())
    gauge = Gauge("t_depth", "A gauge.\nTwo lines \\ slash.", ["kind"], registry=registry)
    gauge.labels("x").set(-1.5)
    gauge.labels("y").set(float("inf"))
    latency = Histogram(
        "t_latency_seconds", "A histogram.", ["route"], buckets=(0.01, 1, 2e6), registry=registry
    )
    for value in (0.001, 0.5, 3, 5e6):
        latency.labels("/a").observe(value)
    Histogram("t_empty_seconds", "Never observed.", registry=registry)
    return registry


def test_the_fast_exposition_matches_the_library_series_for_series() -> None:
    registry = _registry()
    fast = TextExposition(registry)
    expected = _families(generate_latest(registry))
    assert _families(fast.render()) == expected
    assert _families(fast.render()) == expected  # the second render, from cached prefixes


def test_the_order_of_families_is_the_registrys() -> None:
    registry = _registry()

    def names(text: bytes) -> list[str]:
        return [line.split()[2] for line in text.decode().splitlines() if line.startswith("# TYPE")]

    assert names(TextExposition(registry).render()) == names(generate_latest(registry))


async def test_rendering_hands_the_loop_back_between_chunks() -> None:
    registry = CollectorRegistry()
    counter = Counter("t_many", "Many series.", ["n"], registry=registry)
    for n in range(CHUNK * 3):
        counter.labels(str(n)).inc()
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    counting = asyncio.create_task(count_turns())
    await asyncio.sleep(0)
    body = await TextExposition(registry).render_async()
    counting.cancel()
    assert turns >= 3
    assert _families(body) == _families(generate_latest(registry))
