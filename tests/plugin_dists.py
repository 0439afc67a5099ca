"""Plug-in distributions written by hand, as pip would leave them: a ``*.dist-info`` directory
with ``METADATA`` and ``entry_points.txt``, beside the module its entry points name. A test puts
the directory on ``sys.path`` (or ``PYTHONPATH``) to install them."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path

# A module of node factories, good and broken, for the entry points of the tests' plug-ins.
FACTORIES = """
from app.nodes.plugin import NodeConfig, NodeDefinition, NodeOutput, NodeType


class EchoConfig(NodeConfig):
    text: str


class Echo:
    async def execute(self, ctx):
        return NodeOutput({"echo": await ctx.render("text")})


def echo(resources):
    resources.logger.info("echo ready")
    return NodeDefinition(NodeType("test.echo", EchoConfig, "Echoes `text`."), Echo())


def shout(resources):
    return [NodeDefinition(NodeType("test.shout", EchoConfig, "Echoes `text` too."), Echo())]


def clash(resources):
    return [NodeDefinition(NodeType("http", EchoConfig), Echo())]


def raises(resources):
    raise RuntimeError("factory broken on purpose")


def not_definitions(resources):
    return 42
"""

BROKEN_ON_IMPORT = 'raise RuntimeError("module broken on purpose")\n'


def write_plugin(
    root: Path,
    dist: str,
    entry_points: Mapping[str, str],
    *,
    source: str = FACTORIES,
    version: str = "1.0.0",
) -> str:
    """Install ``dist`` (at ``version``) into ``root``: one module holding ``source``, and an
    ``oxify.nodes`` entry point per ``name -> attribute of that module``. Returns the module's
    name (unique, so no test sees another's module in ``sys.modules``)."""
    module = f"{dist.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(source, encoding="utf-8")
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    metadata = f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
    (info / "METADATA").write_text(metadata, encoding="utf-8")
    lines = ["[oxify.nodes]", *(f"{name} = {module}:{attr}" for name, attr in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return module
