"""Golden documents of the analysis tests, with the numbers they are known to give."""

from __future__ import annotations

from typing import Any

from tests.support import edge, node, workflow

RETRY = {"max_retries": 2}


def llm(node_id: str, prompt: str = "Say hello.", **config: Any) -> dict[str, Any]:
    return node(node_id, "llm", provider="openai", model="gpt-4o-mini", prompt=prompt, **config)


def unhealthy() -> dict[str, Any]:
    """Every kind of issue once or twice (the score is 24: see test_health)."""
    fetch = node(
        "fetch",
        "http",
        url="http://api.example.com/items",
        headers={"Authorization": "Bearer s3cr3t"},
    )
    return workflow(
        [node("start", "start"), fetch, llm("ask", "Summarise {{ fetch.body }}"), node("orphan")],
        [edge("start", "fetch"), edge("fetch", "ask")],
    )


def healthy() -> dict[str, Any]:
    """Calls with retries, timeouts, https, templated and stored credentials."""
    fetch = node(
        "fetch",
        "http",
        url="https://api.example.com/items",
        auth={"type": "bearer", "token": "{{ inputs.token }}"},
        retry=RETRY,
        timeout_s=10,
    )
    local = node(
        "local",
        "http",
        url="http://127.0.0.1:8080/ping",
        auth={"type": "credential", "name": "local"},
        retry=RETRY,
        timeout_s=5,
    )
    ask = llm("ask", max_tokens=200, retry=RETRY, timeout_s=30)
    return workflow(
        [node("start", "start"), fetch, local, ask],
        [edge("start", "fetch"), edge("start", "local"), edge("fetch", "ask")],
    )


def branchy() -> dict[str, Any]:
    """An if with a join, then a foreach of two chained nodes (complexity: see test_complexity)."""
    loop = node(
        "loop",
        "foreach",
        items=[1, 2, 3],
        body={"nodes": [node("x"), node("y")], "edges": [edge("x", "y")]},
    )
    return workflow(
        [
            node("a"),
            node("cond", "if", condition="inputs.flag"),
            node("b"),
            node("c"),
            node("d"),
            loop,
        ],
        [
            edge("a", "cond"),
            edge("cond", "b", "true"),
            edge("cond", "c", "false"),
            edge("b", "d"),
            edge("c", "d"),
            edge("d", "loop"),
        ],
    )
