"""Every document in ``examples/`` runs through ``oxify run`` and gives its documented outputs."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app import cli
from app.domain.node_types import CORE_NODE_TYPES
from app.engine.compile.render import FORMATS
from app.settings import get_settings
from tests.mcp_server import mcp_server_thread
from tests.providers import Text, openai_server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

EXPECTED: dict[str, Any] = {
    "start_end": {"greeting": "Hello, world!", "shout": "WORLD", "letters": 5},
    "transform": {
        "lines": 2,
        "total_cents": 860,
        "skus": "apple, pear",
        "label": "2 lines, 860 EUR cents",
    },
    "set_var": {"discount_percent": 20, "final_price": 160},
    "http": {"source": "offline", "status": None, "body": None},
    "graphql": {"source": "offline", "country": {"name": None, "capital": None}},
    "if": {"route": "manual review", "amount": 1500, "notify": "finance"},
    "switch": {"queue": "team", "sla_hours": 8, "title": "Login page is down"},
    "delay": {"requests": [1, 2], "paused_s": 0.1},
    "fail": {
        "order": {"status": "backordered", "qty": 5, "reason": "only 3 in stock, 5 requested"}
    },
    "foreach": {
        "scores": [
            {"position": 0, "author": "ada", "positive": True},
            {"position": 1, "author": "grace", "positive": False},
            {"position": 2, "author": "linus", "positive": True},
            {"position": 3, "author": "barbara", "positive": False},
            {"position": 4, "author": "ken", "positive": True},
        ],
        "positive": 3,
    },
    "while": {
        "requests": 3,
        "fetched": 25,
        "pages": [
            {"page": 1, "offset": 0, "limit": 10},
            {"page": 2, "offset": 10, "limit": 10},
            {"page": 3, "offset": 20, "limit": 5},
        ],
    },
    "repeat": {
        "accounts": [
            {"id": 1, "email": "tester1@example.com", "admin": True},
            {"id": 2, "email": "tester2@example.com", "admin": False},
            {"id": 3, "email": "tester3@example.com", "admin": False},
        ]
    },
    "try": {
        "result": {
            "price": 0,
            "parsed": False,
            "failed_at": "parse_price.try.parse",
            "code": "expression_failed",
        },
        "attempted": "12,50",
    },
    "subworkflow": {
        "contact": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "company_domain": "example.com",
    },
    "retry_timeout": {"source": "cache", "reason": "node_timeout"},
    "code_expression": {"subtotal": 610, "total": 549},
    "code_python": {"stats": {"count": 5, "median": 18.25, "outliers": [95]}},
    "code_wasm": {"json_bytes": 15, "echoed": "wasm"},
    "notes": {
        "note": "# Durable agents\n\n- every model turn is journaled\n- a finished tool call never "
        "runs again",
        "points": 2,
    },
}

# Model calls: run against a local OpenAI-compatible server (tests/providers) that answers the
# chat call with this reply (embeddings are the server's own, words shared -> vectors close).
MODEL_SERVED: dict[str, tuple[Text, Any]] = {
    "classifier": (
        Text.of_json({"category": "billing", "urgency": "high"}),
        {"queue": "finance", "urgency": "high"},
    ),
    "rag": (
        Text("Another replica takes the run over and continues it [durability]."),
        {
            "answer": "Another replica takes the run over and continues it [durability].",
            "sources": ["durability", "forms"],
        },
    ),
}

# Tool calls: run against a local MCP server (tests/mcp_server.py) named `demo` in the settings.
MCP_SERVED: dict[str, Any] = {"mcp": {"items": 5, "headline": "5 ITEMS FOR ADA!"}}

# Agents: run end to end on a server (an approval, a stored workflow as a tool) against local
# model, MCP and HTTP servers in tests/api/test_agent_examples.py.
AGENTS = {"agent_support", "agent_research"}

# Human steps: `oxify run` stops at them (the server answers them; tests/api/test_forms.py).
WAITING = {"approval": "finance", "form": "details"}

# Outputs with the sibling ``<name>.inputs.json`` (another branch, other items).
EXPECTED_WITH_INPUTS: dict[str, Any] = {
    "if": {"route": "auto-approved", "amount": 250, "notify": "grace"},
    "switch": {
        "queue": "triage",
        "sla_hours": 24,
        "title": "Dark mode",
        "note": "unknown priority someday",
    },
    "foreach": {
        "scores": [
            {"position": 0, "author": "dennis", "positive": True},
            {"position": 1, "author": "margaret", "positive": False},
        ],
        "positive": 1,
    },
}


def documents() -> list[Path]:
    return sorted(p for p in EXAMPLES.glob("*.json") if not p.name.endswith(".inputs.json"))


def node_types(graph: Any) -> Iterator[str]:
    """Every ``type`` of a node in ``graph`` and in the graphs nested in its configs."""
    for node in graph.get("nodes", []):
        yield node["type"]
        for value in node.get("config", {}).values():
            if isinstance(value, dict) and "nodes" in value:
                yield from node_types(value)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_every_example_has_expected_outputs() -> None:
    assert {p.stem for p in documents()} == (
        set(EXPECTED) | set(WAITING) | set(MODEL_SERVED) | set(MCP_SERVED) | AGENTS
    )
    for name in EXPECTED_WITH_INPUTS:
        assert (EXAMPLES / f"{name}.inputs.json").is_file()


def test_examples_cover_every_core_node_type() -> None:
    used = {t for p in documents() for t in node_types(json.loads(p.read_text()))}
    assert set(CORE_NODE_TYPES) <= used


def test_readme_lists_every_example() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    for path in documents():
        assert f"oxify run examples/{path.name}" in readme


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "run", str(EXAMPLES / f"{name}.json"), "--quiet")
    assert code == 0, err
    assert json.loads(out) == EXPECTED[name]
    assert err == ""


@pytest.mark.parametrize("name", sorted(MODEL_SERVED))
def test_model_example_runs_against_a_local_server(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    reply, expected = MODEL_SERVED[name]
    with openai_server() as server:  # its own thread: `oxify run` runs its own event loop
        server.script(reply)
        path = str(EXAMPLES / f"{name}.json")
        code, out, err = run(capsys, "run", path, "--quiet", "--input", f"base_url={server.url}")
    assert code == 0, err
    assert json.loads(out) == expected


@contextlib.contextmanager
def demo_mcp_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The test MCP server in a thread of its own (`oxify` runs its own event loop), named
    `demo` in the settings the command reads."""
    with mcp_server_thread() as server:
        monkeypatch.setenv("OXIFY_MCP_SERVERS", json.dumps({"demo": {"url": server.url}}))
        get_settings.cache_clear()
        try:
            yield
        finally:
            get_settings.cache_clear()


@pytest.mark.parametrize("name", sorted(MCP_SERVED))
def test_mcp_example_runs_against_a_local_server(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with demo_mcp_server(monkeypatch):
        code, out, err = run(capsys, "run", str(EXAMPLES / f"{name}.json"), "--quiet")
    assert code == 0, err
    assert json.loads(out) == MCP_SERVED[name]


@pytest.mark.parametrize("name", sorted(WAITING))
def test_example_stops_at_its_human_step(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "run", str(EXAMPLES / f"{name}.json"), "--quiet")
    assert code == cli.EXIT_WAITING, err
    assert out == ""
    assert f"waiting for a person at: {WAITING[name]}" in err


@pytest.mark.parametrize("name", sorted(EXPECTED_WITH_INPUTS))
def test_example_runs_with_its_inputs_file(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    inputs = str(EXAMPLES / f"{name}.inputs.json")
    code, out, err = run(capsys, "run", str(EXAMPLES / f"{name}.json"), "--inputs-json", inputs)
    assert code == 0, err
    assert json.loads(out) == EXPECTED_WITH_INPUTS[name]
    assert "■ completed" in err


@pytest.mark.parametrize("path", documents(), ids=lambda p: p.stem)
def test_example_validates(
    path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if path.stem not in {*MCP_SERVED, "agent_support"}:
        code, out, err = run(capsys, "validate", str(path))
    else:  # its tools are checked against the server, as a server's validation does
        with demo_mcp_server(monkeypatch):
            code, out, err = run(capsys, "validate", str(path))
    assert code == 0, err
    assert out.startswith("valid: ")


def test_validate_checks_mcp_tools_against_the_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    document = json.loads((EXAMPLES / "mcp.json").read_text())
    mcp_node = next(n for n in document["nodes"] if n["type"] == "mcp")
    mcp_node["config"]["tool"] = "no_such_tool"
    path = tmp_path / "unknown_tool.json"
    path.write_text(json.dumps(document))
    with demo_mcp_server(monkeypatch):
        code, _, err = run(capsys, "validate", str(path))
    assert code == cli.EXIT_FAILED
    assert "no_such_tool" in err and "(unknown_tool)" in err


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("path", documents(), ids=lambda p: p.stem)
def test_example_renders(path: Path, fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "graph", str(path), "--format", fmt)
    assert code == 0, err
    assert out.strip()
    assert err == ""
