"""Validation of ``agent`` documents: tool names unique, parameters an object schema, templates
only where the contract puts them (an http tool's request and auth see ``args``; a code tool's
source is Python, whatever braces it holds)."""

from __future__ import annotations

from typing import Any

from app.engine.compile import graph
from app.errors import ErrorDetail
from tests.support import edge, node, workflow

PARAMETERS = {"type": "object", "properties": {"q": {"type": "string"}}}


def problems(*tools: dict[str, Any], **config: Any) -> list[ErrorDetail]:
    agent = node("helper", "agent", provider="openai", model="m", prompt="go", tools=list(tools))
    agent["config"] |= config
    return graph.validate_workflow(
        workflow([node("start", "start"), agent], [edge("start", "helper")])
    )


def http_tool(name: str = "search", **request: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "name": name,
        "description": "Searches.",
        "parameters": PARAMETERS,
        "request": {"url": "https://example.com/search", **request},
    }


def code_tool(
    name: str = "run", source: str = "def main(inputs):\n    return 1\n"
) -> dict[str, Any]:
    return {
        "type": "code",
        "name": name,
        "description": "Runs.",
        "parameters": PARAMETERS,
        "source": source,
    }


def test_templates_in_an_http_tool_see_args_and_the_run() -> None:
    tool = http_tool(
        url="{{ inputs.base }}/search",
        query={"q": "{{ args.q }}"},
        headers={"X-Who": "{{ inputs.who }}"},
    )
    assert problems(tool) == []


def test_args_outside_a_tool_and_unknown_names_are_refused() -> None:
    found = problems(http_tool(query={"q": "{{ argz.q }}"}), prompt="{{ args.q }}")
    assert sorted((p.pointer, p.code) for p in found) == [
        ("/nodes/1/config/prompt", "unknown_reference"),
        ("/nodes/1/config/tools/0/request/query/q", "unknown_reference"),
    ]


def test_a_code_tools_source_is_not_a_template() -> None:
    source = "def main(inputs):\n    return f'{{{{ {inputs} }}}}'\n"
    assert problems(code_tool(source=source)) == []


def test_tool_names_must_be_unique() -> None:
    found = problems(http_tool("lookup"), code_tool("lookup"))
    assert [p.pointer for p in found] == ["/nodes/1/config"]
    assert "'lookup' is used by tools/0 and tools/1" in found[0].message


def test_parameters_are_an_object_schema() -> None:
    tool = code_tool() | {"parameters": {"type": "array"}}
    found = problems(tool)
    assert [p.pointer for p in found] == ["/nodes/1/config/tools/0/parameters"]
    assert "of type 'object'" in found[0].message
    found = problems(code_tool() | {"parameters": {"type": "nonsense"}})
    assert "not a valid JSON Schema" in found[0].message


def test_tool_names_follow_the_providers_rule() -> None:
    found = problems(code_tool("has space"))
    assert [p.pointer for p in found] == ["/nodes/1/config/tools/0/name"]
