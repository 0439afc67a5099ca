"""Estimates: known token counts and dollars, loop sizes from inputs, past runs."""

from __future__ import annotations

import pytest

from app.engine.analysis import estimate
from app.engine.analysis.estimate import PastUsage
from app.engine.compile import graph
from tests.support import node, workflow
from tests.unit.engine.analysis.documents import llm


def flat_price(provider: str, model: str) -> tuple[float, float] | None:
    """$1 in, $2 out per million tokens for gpt-4o-mini; nothing else is priced."""
    return (1.0, 2.0) if (provider, model) == ("openai", "gpt-4o-mini") else None


def looped(items: object) -> dict[str, object]:
    ask = llm("ask", "x" * 400, max_tokens=100)
    return workflow([node("loop", "foreach", items=items, body={"nodes": [ask], "edges": []})], [])


def test_an_llm_in_a_literal_loop() -> None:
    report = estimate.estimate(graph.plan_workflow(looped([1, 2, 3])), flat_price)
    (ask,) = report.nodes
    assert (ask.node_id, ask.pointer, ask.basis) == (
        "ask",
        "/nodes/0/config/body/nodes/0",
        "static",
    )
    assert ask.calls.model_dump() == {"low": 3, "expected": 3, "high": 3}
    # 400 chars / 4 = 100 tokens a call, x 0.5 / 1 / 1.5; answers 1 / 25 / 100 (max_tokens)
    assert ask.input_tokens.model_dump() == {"low": 150, "expected": 300, "high": 450}
    assert ask.output_tokens.model_dump() == {"low": 3, "expected": 75, "high": 300}
    assert ask.tokens.model_dump() == {"low": 153, "expected": 375, "high": 750}
    assert ask.cost_usd is not None
    assert ask.cost_usd.low == pytest.approx(156e-6)
    assert ask.cost_usd.expected == pytest.approx(450e-6)
    assert ask.cost_usd.high == pytest.approx(1050e-6)
    assert report.tokens == ask.tokens
    assert report.tokenizer == "chars/4"
    assert report.unpriced_nodes == []
    assert any("characters / 4" in line for line in report.assumptions)


def test_a_loop_sized_by_the_inputs_and_unknown_without_them() -> None:
    plan = graph.plan_workflow(looped("{{ inputs.docs }}"))
    sized = estimate.estimate(plan, flat_price, inputs={"docs": [1, 2, 3, 4]})
    assert sized.nodes[0].calls.model_dump() == {"low": 4, "expected": 4, "high": 4}
    unknown = estimate.estimate(plan, flat_price)
    assert unknown.nodes[0].calls.model_dump() == {"low": 1, "expected": 10, "high": 1000}


def test_an_agent_resends_its_transcript_each_turn() -> None:
    agent = node(
        "agent",
        "agent",
        provider="openai",
        model="unknown-model",
        prompt="y" * 40,
        max_tokens=10,
        max_turns=4,
    )
    report = estimate.estimate(graph.plan_workflow(workflow([agent], [])), flat_price)
    (found,) = report.nodes
    assert found.calls.model_dump() == {"low": 1, "expected": 3, "high": 4}
    # turn t reads 5 / 10 / 15 prompt tokens + (t - 1) answers of 1 / 3 / 10 tokens
    assert found.input_tokens.model_dump() == {"low": 5, "expected": 39, "high": 120}
    assert found.output_tokens.model_dump() == {"low": 1, "expected": 9, "high": 40}
    assert found.cost_usd is None
    assert report.unpriced_nodes == ["agent"]


def test_placeholders_widen_the_prompt() -> None:
    document = workflow([llm("ask", "{{ inputs.q }}", max_tokens=20)], [])
    (ask,) = estimate.estimate(graph.plan_workflow(document), flat_price).nodes
    assert len("{{ inputs.q }}") == 14  # 4 tokens as chars / 4, 2 / 4 / 6 spread
    assert ask.input_tokens.model_dump() == {"low": 2, "expected": 104, "high": 1006}


def test_past_runs_replace_the_static_numbers() -> None:
    past = {"loop.ask": [PastUsage(100, 0.001), PastUsage(300, 0.003)]}
    report = estimate.estimate(graph.plan_workflow(looped([1])), flat_price, past=past)
    (ask,) = report.nodes
    assert ask.basis == "past_runs"
    assert ask.measured is not None and ask.measured.runs == 2
    assert ask.tokens.model_dump() == {"low": 100, "expected": 200, "high": 300}
    assert ask.cost_usd is not None
    assert ask.cost_usd.expected == pytest.approx(0.002)
