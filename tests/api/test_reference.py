"""docs/api.md, the API reference a newcomer reads, is the app's: current, and complete (every
route with its error codes, every event type, the document, every core node type's config)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from app import cli, cli_docs, cli_docs_schema, cli_docs_text
from app.domain.events import EventType
from app.domain.node_types import CORE_NODE_TYPES

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "api.md"
REGENERATE = "oxify docs"
METHODS = {"get", "put", "post", "delete", "patch"}


@pytest.fixture(scope="module")
def reference() -> str:
    return cli_docs.generate()


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(cli_docs.openapi_text())
    return loaded


def section(reference: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    level = heading.split(" ")[0]
    start = reference.index(f"\n{heading}\n")
    ends = [m.start() for m in re.finditer(rf"\n#{{1,{len(level)}}} ", reference[start + 1 :])]
    return reference[start : start + 1 + ends[0]] if ends else reference[start:]


def test_the_committed_reference_is_current(reference: str) -> None:
    assert COMMITTED.exists(), f"docs/api.md is missing: run `{REGENERATE}`"
    assert COMMITTED.read_text(encoding="utf-8") == reference, (
        f"docs/api.md is stale: run `{REGENERATE}` and commit the result"
    )


def test_every_route_with_its_error_codes(reference: str, document: dict[str, Any]) -> None:
    catalogue = cli_docs.error_catalogue()
    for path, item in document["paths"].items():
        for method in METHODS & set(item):
            text = section(reference, f"### `{method.upper()} {path}`")
            for status in (s for s in item[method]["responses"] if s[0] in "45"):
                [row] = [line for line in text.splitlines() if line.startswith(f"| {status} |")]
                codes = re.findall(r"`([a-z_]+)`", row.split("|")[2])
                assert codes, f"{method.upper()} {path} {status}: no code"
                assert all(catalogue[code][0] == int(status) for code in codes), row
    assert "### `WS /v1/executions/{execution_id}/ws`" in reference


def test_route_specific_codes(reference: str) -> None:
    start = section(reference, "### `POST /v1/workflows/{workflow_id}/executions`")
    assert "| 409 | `workflow_archived`, `idempotency_conflict` |" in start
    assert "| 404 | `workflow_not_found` |" in start
    submit = section(reference, "### `POST /v1/forms/{form_id}/submit`")
    assert "| 403 | `insufficient_scope`, `not_an_approver` |" in submit
    pause = section(reference, "### `POST /v1/executions/{execution_id}/pause`")
    assert "| 409 | `invalid_state` |" in pause


def test_every_error_code_is_listed(reference: str) -> None:
    codes = section(reference, "## Error codes")
    for code, (status, _) in cli_docs.error_catalogue().items():
        assert f"| `{code}` | {status} |" in codes
    assert "| `node_timeout` |" in codes  # and the codes a failed node carries


def test_every_event_type_with_its_data(reference: str) -> None:
    events = section(reference, "## Events")
    for kind in EventType:
        assert f"| `{kind.value}` |" in events


def test_the_document_and_every_core_node_type(reference: str, document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    workflow = section(reference, "### `WorkflowDocument`")
    for field in schemas["WorkflowDocument"]["properties"]:
        assert f"| `{field}` |" in workflow
    for kind, config in cli_docs.node_configs(schemas).items():
        text = section(reference, f"### `{kind}` node")
        assert cli_docs_schema.cell(CORE_NODE_TYPES[kind].description) in text
        for field in schemas[config].get("properties", {}):
            assert f"| `{field}` |" in text, f"{kind}: {field}"
        assert "Output: " in text
    assert "| `condition` | expression |" in section(reference, "### `if` node")


def test_the_reference_refuses_to_leave_things_out(
    monkeypatch: pytest.MonkeyPatch, document: dict[str, Any]
) -> None:
    """A new event type, node type or error status fails generation (and so the staleness
    test) until the reference says what it is."""
    events = dict(cli_docs_text.EVENTS)
    del events[EventType.NODE_SKIPPED]
    monkeypatch.setattr(cli_docs_text, "EVENTS", events)
    with pytest.raises(ValueError, match=r"node\.skipped"):
        cli_docs.generate()
    monkeypatch.undo()

    listing = document["paths"]["/v1/workflows"]["get"]
    with_conflict = {**listing, "responses": {**listing["responses"], "409": {}}}
    with pytest.raises(ValueError, match="409 has no code"):
        cli_docs.route_codes("GET", "/v1/workflows", with_conflict)


def test_links_point_at_headings(reference: str) -> None:
    anchors = {
        cli_docs.anchor(line.lstrip("#"))
        for line in reference.splitlines()
        if re.match(r"#{1,4} ", line)
    }
    for target in re.findall(r"\]\(#([^)]+)\)", reference):
        assert target in anchors, target


def test_the_command_writes_the_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reference: str
) -> None:
    target = tmp_path / "out" / "api.md"
    assert cli.main(["docs", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == reference
    assert f"wrote {target}" in capsys.readouterr().err


def test_the_readme_points_at_the_reference() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(docs/api.md)" in readme


def test_nothing_points_outside_the_repository() -> None:
    """The project's own notes live outside the product; no file may send readers there."""
    outside = ["../" + "shared", "api-" + "contract.md"]
    skipped = {
        ".git",
        ".venv",
        ".cache",
        "__pycache__",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
    }
    for path in ROOT.rglob("*"):
        if skipped & set(path.relative_to(ROOT).parts) or not path.is_file():
            continue
        if path.suffix not in {".md", ".py", ".toml", ".json", ".yml", ".yaml", ".txt", ""}:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for needle in outside:
            assert needle not in text, f"{path.relative_to(ROOT)} mentions {needle}"
