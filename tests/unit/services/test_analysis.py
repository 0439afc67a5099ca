"""What past runs spent, per node: loop iterations summed per run, unpriced runs cost nothing."""

from __future__ import annotations

from typing import Any

from app.engine.analysis.estimate import PastUsage
from app.services import analysis


def test_iterations_are_summed_per_run_and_keys_lose_their_indices() -> None:
    rows: list[tuple[str, str, dict[str, Any]]] = [
        ("run1", "loop[0].ask", {"tokens": 10, "cost_usd": 0.1}),
        ("run1", "loop[1].ask", {"tokens": 20, "cost_usd": 0.2}),
        ("run2", "loop[0].ask", {"tokens": 5, "cost_usd": 0.05}),
        ("run1", "solo", {"tokens": 7, "unpriced_calls": 1}),
    ]
    past = analysis.past_usage(rows)
    assert past["loop.ask"] == [
        PastUsage(tokens=30.0, cost_usd=0.1 + 0.2),
        PastUsage(tokens=5.0, cost_usd=0.05),
    ]
    assert past["solo"] == [PastUsage(tokens=7.0, cost_usd=None)]
