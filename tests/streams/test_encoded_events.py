"""The wire-form cache behind the SSE and WebSocket routes: bounded by bytes, not events."""

from __future__ import annotations

import gc
import json
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from app.api.routes.stream import _Encoded
from app.domain.events import Event, EventType

MIB = 1024 * 1024
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def big(seq: int, size: int = MIB) -> Event:
    return Event("run", seq, EventType.NODE_COMPLETED, T0, "n", data={"output": "x" * size})


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def held_after(work: Callable[[], object]) -> int:
    """Bytes still allocated after ``work()`` ran and its own garbage was collected."""
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    work()
    gc.collect()
    return tracemalloc.get_traced_memory()[0] - before


def test_the_cache_holds_a_bounded_number_of_bytes_dropping_the_oldest(traced: None) -> None:
    encoded = _Encoded()
    bound = 2 * _Encoded.MAX_BYTES  # JSON texts and frames: each has the bound
    kept: dict[int, bytes] = {}

    def encode_many() -> None:
        for seq in range(1, 41):  # 40 MiB of output, each event sent as frame and as JSON
            frame = encoded.frame(big(seq))
            encoded.json(big(seq))
            if seq in (1, 40):
                kept[seq] = frame

    assert held_after(encode_many) <= bound + 2 * MIB + MIB // 4  # + the two kept here
    assert encoded.frame(big(40)) is kept[40]  # the newest: still cached
    assert encoded.frame(big(1)) is not kept[1]  # the oldest: dropped, encoded anew


def test_an_event_bigger_than_the_cache_is_encoded_but_not_kept(traced: None) -> None:
    huge = big(1, _Encoded.MAX_BYTES + MIB)
    encoded = _Encoded()
    held = held_after(lambda: (encoded.frame(huge), encoded.json(huge)))
    assert held < MIB
    frame = encoded.frame(huge)
    assert frame.startswith(b"id: 1\nevent: node.completed\ndata: ")
    text = frame.split(b"data: ", 1)[1].strip().decode()
    assert text == encoded.json(huge)
    assert json.loads(text)["data"]["output"] == huge.data["output"]
