"""The registry: built-ins come from their families' factories, plug-ins from entry points; a
broken plug-in is logged by name and skipped while the rest load."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from app.domain.node_types import CORE_NODE_TYPES
from app.engine.compile import graph
from app.nodes import registry as node_registry
from app.nodes.plugin import NodeDefinition
from app.nodes.registry import BUILTIN, NodeOrigin, core_registry, load_registry
from app.nodes.resources import NodeResources
from app.settings import Settings
from tests.plugin_dists import BROKEN_ON_IMPORT, write_plugin
from tests.support import Harness, node, workflow

GREET = Path(__file__).resolve().parents[3] / "examples" / "plugins" / "hello" / "greet.json"


@pytest.fixture
def resources() -> NodeResources:
    return NodeResources(settings=Settings(database_url="sqlite+aiosqlite:///:memory:"))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory on ``sys.path`` to install plug-in distributions into."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    return root


def test_built_ins_are_what_their_factories_return(resources: NodeResources) -> None:
    registry = core_registry(resources)
    made = [d for factory in node_registry.BUILTIN_FACTORIES for d in factory(resources)]
    assert sorted(registry.node_types) == sorted(d.node_type.name for d in made)
    assert sorted(registry.node_types) == sorted(CORE_NODE_TYPES)
    for definition in made:
        name = definition.node_type.name
        assert registry.node_types[name] is definition.node_type
        assert type(registry.executors[name]) is type(definition.executor)
    version = node_registry.installed_version(node_registry.OXIFY_DISTRIBUTION)
    assert set(registry.origins.values()) == {NodeOrigin(BUILTIN, version)}


def test_built_ins_are_called_like_plug_ins(
    resources: NodeResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[NodeResources] = []

    def family(given: NodeResources) -> NodeDefinition:
        seen.append(given)
        return NodeDefinition(CORE_NODE_TYPES["start"], object())  # type: ignore[arg-type]

    monkeypatch.setattr(node_registry, "BUILTIN_FACTORIES", (family,))
    with pytest.raises(node_registry.DefinitionsInvalid, match="no execute method"):
        core_registry(resources)
    assert seen == [resources]


def test_plug_ins_load_with_their_distribution_and_version(
    resources: NodeResources, site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_plugin(site, "oxify-echo", {"echo": "echo", "shout": "shout"}, version="2.3.4")
    with caplog.at_level(logging.INFO, logger="oxify.nodes"):
        registry = load_registry(resources)
    assert registry.origins["test.echo"] == NodeOrigin("oxify-echo", "2.3.4")
    assert registry.origins["test.shout"] == NodeOrigin("oxify-echo", "2.3.4")
    assert registry.origins["http"].source == BUILTIN
    # each factory got a view of the resources with a logger of its own
    assert [r.name for r in caplog.records if r.message == "echo ready"] == ["oxify.nodes.echo"]
    catalog = registry.catalog()
    assert [item.type for item in catalog.items] == sorted(registry.node_types)
    echo = next(item for item in catalog.items if item.type == "test.echo")
    assert (echo.source, echo.version, echo.description) == (
        "oxify-echo",
        "2.3.4",
        "Echoes `text`.",
    )
    assert echo.config_schema["properties"]["text"]["type"] == "string"
    assert echo.config_schema["additionalProperties"] is False


@pytest.mark.parametrize(
    ("entry", "attribute", "said"),
    [
        ("fragile", None, "could not be imported; skipped: RuntimeError: module broken on purpose"),
        (
            "raises",
            "raises",
            "its factory raised; skipped: RuntimeError: factory broken on purpose",
        ),
        ("answers", "not_definitions", "its factory returned 42, not NodeDefinitions; skipped"),
        ("clash", "clash", "node type 'http' is already known (builtin); skipped"),
    ],
)
def test_a_broken_plug_in_is_logged_by_name_and_skipped(
    resources: NodeResources,
    site: Path,
    caplog: pytest.LogCaptureFixture,
    entry: str,
    attribute: str | None,
    said: str,
) -> None:
    write_plugin(site, "oxify-echo", {"echo": "echo"})
    if attribute is None:
        write_plugin(site, "oxify-broken", {entry: "definitions"}, source=BROKEN_ON_IMPORT)
    else:
        write_plugin(site, "oxify-broken", {entry: attribute}, version="0.9")
    with caplog.at_level(logging.WARNING, logger="oxify.nodes"):
        registry = load_registry(resources)
    version = "1.0.0" if attribute is None else "0.9"
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in problems] == [
        f"node plug-in {entry!r} (distribution 'oxify-broken' {version}): {said}"
    ]
    # the rest loaded, and a clashing plug-in did not replace the built-in
    assert registry.origins["test.echo"].source == "oxify-echo"
    assert registry.origins["http"].source == BUILTIN
    assert set(CORE_NODE_TYPES) <= set(registry.node_types)


def test_a_type_another_plug_in_added_first_is_refused(
    resources: NodeResources, site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_plugin(site, "oxify-echo", {"echo": "echo"})
    write_plugin(site, "oxify-echo-again", {"again": "echo"})
    with caplog.at_level(logging.WARNING, logger="oxify.nodes"):
        registry = load_registry(resources)
    winner = registry.origins["test.echo"].source
    assert winner in {"oxify-echo", "oxify-echo-again"}
    loser = "oxify-echo-again" if winner == "oxify-echo" else "oxify-echo"
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert f"(distribution {loser!r} 1.0.0)" in record.getMessage()
    assert "node type 'test.echo' is already known" in record.getMessage()


async def test_a_plug_in_type_runs(resources: NodeResources, site: Path) -> None:
    write_plugin(site, "oxify-echo", {"echo": "echo"})
    harness = Harness(registry=load_registry(resources))
    document = workflow([node("say", "test.echo", text="{{ inputs.word }}!")], [])
    outcome = await harness.run(document, {"word": "hi"})
    assert outcome.outputs == {"echo": "hi!"}


def test_a_document_using_a_type_not_installed_fails_validation_naming_it(
    resources: NodeResources,
) -> None:
    document = json.loads(GREET.read_text(encoding="utf-8"))
    [error] = graph.validate_workflow(document, node_types=core_registry(resources).node_types)
    assert (error.code, error.pointer) == ("unknown_type", "/nodes/1/type")
    assert "'hello.greet'" in error.message
