"""The walk that decides whether a value may leave a node: storable JSON, bounded in size."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from app.engine.run import payload


def nested(levels: int) -> list[Any]:
    outer: list[Any] = []
    inner = outer
    for _ in range(levels - 1):
        inner.append([])
        inner = inner[0]
    return outer


@pytest.mark.parametrize(
    "value",
    [None, True, 0, -(2**63), 2**64 - 1, 1.5, "", "é", [], {}, {"a": [1, {"b": None}]}, (1, 2)],
)
def test_json_values_within_the_limit_may_leave(value: Any) -> None:
    assert payload.check(value, 1000) is None


def test_the_size_is_about_the_compact_json() -> None:
    value = {"name": "Ada", "tags": ["a", "bb"], "n": 12, "ok": True, "none": None}
    walk = payload.Walk(value, 10_000)
    assert walk.run()
    assert walk.problem is None
    exact = len(orjson.dumps(value))
    assert exact <= walk.size <= 2 * exact
    assert payload.Walk("é" * 10, 100).run()  # UTF-8 bytes, not characters
    assert payload.check("é" * 10, 21) is not None


def test_the_walk_stops_once_past_the_limit() -> None:
    huge = ["x" * 1000] * 1_000_000  # a gigabyte as JSON
    problem = payload.check(huge, 10_000)
    assert isinstance(problem, payload.Problem)
    assert problem.kind == "too_large"
    assert 10_000 < problem.size < 1_002_000_000  # a lower bound: the walk stopped early


def test_the_depth_limit_is_the_stores_encoder_s() -> None:
    deepest = nested(payload.MAX_DEPTH)
    orjson.dumps(deepest)
    assert payload.check(deepest, 10_000) is None
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps(nested(payload.MAX_DEPTH + 1))
    problem = payload.check(nested(payload.MAX_DEPTH + 1), 10_000)
    assert isinstance(problem, payload.Problem)
    assert problem.message == f"nested deeper than {payload.MAX_DEPTH} levels"


@pytest.mark.parametrize(
    ("value", "message", "pointer"),
    [
        ({"a": [0, 2**64]}, "the integer 18446744073709551616 does not fit in 64 bits", "/a/1"),
        ([-(2**63) - 1], "does not fit in 64 bits", "/0"),
        ({"x": {"y": float("inf")}}, "inf is not a JSON number", "/x/y"),
        ({"a/b": {2: 1}}, "the key 2 is not text", "/a~1b"),
        ({"s": ["\udc00"]}, "text holds an unpaired surrogate", "/s/0"),
        ({"b": b"bytes"}, "a bytes is not a JSON value", "/b"),
        (object(), "a object is not a JSON value", ""),
    ],
)
def test_values_the_stores_cannot_write_are_refused_with_a_pointer(
    value: Any, message: str, pointer: str
) -> None:
    problem = payload.check(value, 10_000)
    assert isinstance(problem, payload.Problem)
    assert problem.kind == "invalid"
    assert message in problem.message
    assert problem.pointer == pointer


def test_a_walk_goes_in_slices_and_hands_on_a_container_too_large_for_one() -> None:
    walk = payload.check([[1] * 10, list(range(50))], 10_000, max_items=20)
    assert isinstance(walk, payload.Walk)  # the 50-item list does not fit in a 20-item slice
    assert walk.run()  # the rest, at once
    assert walk.problem is None
    assert walk.size > 50
