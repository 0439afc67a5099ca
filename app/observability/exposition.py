"""The Prometheus text format (0.0.4), written fast enough for 10,000 series per scrape.

prometheus_client's ``generate_latest`` builds a ``Sample`` tuple and a label dict for every
series, then escapes and sorts each label set again on every scrape: about 25 µs a series on
this kind of machine, so 10,000 series take a quarter of a second of CPU. Labels of a child
never change, so here each child's line prefixes (``name{labels} ``) are built once and kept;
a scrape only reads the values and formats numbers. Counters, gauges and histograms, the kinds
this app defines, take that path; any other collector (the process collectors, the app's own
read-when-scraped families) goes through ``generate_latest``, so the output is what the library
would write. ``tests/unit/test_exposition.py`` checks the two agree series for series.

This reads children the way the library's own ``collect`` does (``_metrics``, ``_value``,
``_buckets``, ``_sum``): private names, which is why prometheus-client is pinned to a minor
series in pyproject.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

_FAST_KINDS = (Counter, Gauge, Histogram)
CHUNK = 500  # series written between two pauses of render_async
_number = cast(Callable[[float], str], floatToGoString)  # as Go prints floats: +Inf, 1e+06


class TextExposition:
    """Renders one registry; keeps the line prefixes of the children it has seen."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._prefixes: weakref.WeakKeyDictionary[Any, tuple[str, ...]] = (
            weakref.WeakKeyDictionary()
        )
        self._headers: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()

    def render(self) -> bytes:
        """The registry in the text format, as ``generate_latest`` would write it."""
        out: list[str] = []
        for _ in self._write(out):
            pass
        return "".join(out).encode()

    async def render_async(self) -> bytes:
        """:meth:`render`, handing the event loop back every ``CHUNK`` series (about a
        millisecond of work), so a scrape of any size never stalls the loop. Not in a thread:
        a thread would hold the GIL for whole switch intervals (5 ms) at a time."""
        out: list[str] = []
        for _ in self._write(out):
            await asyncio.sleep(0)
        return "".join(out).encode()

    def _write(self, out: list[str]) -> Iterator[None]:
        """Appends the exposition to ``out``, pausing (yielding) every ``CHUNK`` series."""
        others: list[Collector] = []
        since_pause = 0
        for collector in _collectors(self._registry):
            if type(collector) in _FAST_KINDS:
                if others:  # keep the registry's order
                    out.append(generate_latest(_Only(others)).decode())
                    others = []
                for written in self._family(collector, out):
                    since_pause += written
                    if since_pause >= CHUNK:
                        since_pause = 0
                        yield
            else:
                others.append(collector)
        if others:
            out.append(generate_latest(_Only(others)).decode())

    def _family(self, metric: Any, out: list[str]) -> Iterator[int]:
        """Appends one metric's lines; yields the number of series after each child."""
        header = self._headers.get(metric)
        if header is None:
            header = self._headers[metric] = _header(metric)
        out.append(header)
        if metric._labelnames:
            with metric._lock:
                children = list(metric._metrics.items())
        else:
            children = [((), metric)]
        histogram = isinstance(metric, Histogram)
        for labelvalues, child in children:
            prefixes = self._prefixes.get(child)
            if prefixes is None:
                prefixes = self._prefixes[child] = _prefixes(metric, labelvalues)
            if histogram:
                count = 0.0
                for prefix, bucket in zip(prefixes, child._buckets, strict=False):
                    count += bucket.get()
                    out.append(f"{prefix}{_number(count)}\n")
                out.append(f"{prefixes[-2]}{_number(count)}\n")
                out.append(f"{prefixes[-1]}{_number(child._sum.get())}\n")
            else:
                out.append(f"{prefixes[0]}{_number(child._value.get())}\n")
            yield len(prefixes)


class _Only:
    """A registry-like view of some collectors, for ``generate_latest``."""

    def __init__(self, collectors: list[Collector]) -> None:
        self._collectors = collectors

    def collect(self) -> Iterator[Any]:
        for collector in self._collectors:
            yield from collector.collect()


def _collectors(registry: CollectorRegistry) -> Iterable[Collector]:
    # The registry's own order (``CollectorRegistry.collect`` walks the same dict).
    with registry._lock:
        return list(registry._collector_to_names)


def _header(metric: MetricWrapperBase) -> str:
    name = metric._name + ("_total" if isinstance(metric, Counter) else "")
    kind = metric._type
    help_text = metric._documentation.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"


def _prefixes(metric: Any, labelvalues: tuple[str, ...]) -> tuple[str, ...]:
    """``name{labels} `` of each series of one child: buckets then count and sum for a
    histogram, the one value otherwise."""
    labels = dict(zip(metric._labelnames, labelvalues, strict=True))
    if isinstance(metric, Histogram):
        name = metric._name
        buckets = tuple(
            _line(f"{name}_bucket", {**labels, "le": _number(bound)})
            for bound in metric._upper_bounds
        )
        return (*buckets, _line(f"{name}_count", labels), _line(f"{name}_sum", labels))
    suffix = "_total" if isinstance(metric, Counter) else ""
    return (_line(metric._name + suffix, labels),)


def _line(name: str, labels: dict[str, str]) -> str:
    if not labels:
        return f"{name} "
    pairs = ",".join(f'{key}="{_escaped(value)}"' for key, value in sorted(labels.items()))
    return f"{name}{{{pairs}}} "


def _escaped(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
