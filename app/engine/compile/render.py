"""Pictures of a plan: Mermaid, Graphviz DOT and plain text for a terminal.

Pure functions of a :class:`~app.engine.compile.plan.Plan` that return text; the API's ``/graph``
endpoint and ``oxify graph`` print it. Output is deterministic: nodes follow the plan's
topological order (its levels for text), edges the document's order, nested graphs the order
their config declares them (``try``, ``catch``, ``finally``), so two renderings of one workflow
are byte-identical and a diff of two versions shows only what changed.

Every label is escaped for its format: a node name or a switch case may hold quotes, brackets,
``#``, ``|``, ``<``, ``&`` or newlines without breaking the diagram.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Literal

from app.engine.compile.plan import Plan, PlanEdge, PlanNode

Format = Literal["mermaid", "dot", "ascii"]
FORMATS: tuple[Format, ...] = ("mermaid", "dot", "ascii")  # for CLI choices and query checks
Family = Literal["terminal", "control", "data", "container", "failure", "task"]
Shape = Literal["stadium", "rhombus", "subroutine", "rectangle"]

FAMILY_COLOURS: dict[Family, tuple[str, str]] = {  # (fill, stroke), also the legend order
    "terminal": ("#e8f5e9", "#2e7d32"),
    "control": ("#fff8e1", "#f9a825"),
    "data": ("#e3f2fd", "#1565c0"),
    "container": ("#f3e5f5", "#6a1b9a"),
    "failure": ("#ffebee", "#c62828"),
    "task": ("#eceff1", "#455a64"),
}
_BODY_COLOURS = ("#fafafa", "#9e9e9e")
_TERMINAL = frozenset({"start", "end"})
_CONTROL = frozenset({"if", "switch", "delay"})
_DATA = frozenset({"transform", "set_var"})
_FAILURE = frozenset({"fail"})

NodePath = tuple[str, ...]  # node: (id,) or (container, field, id, ...); nested graph: even length


def render(plan: Plan, fmt: Format) -> str:
    """Render ``plan`` as ``fmt``; raise ValueError for a format that is not one of ours."""
    renderers: dict[str, Callable[[Plan], str]] = {
        "mermaid": to_mermaid,
        "dot": to_dot,
        "ascii": to_ascii,
    }
    renderer = renderers.get(fmt)
    if renderer is None:
        raise ValueError(f"unknown graph format {fmt!r}: expected one of {', '.join(FORMATS)}")
    return renderer(plan)


def family(node: PlanNode) -> Family:
    """The colour family of a node; a plug-in type is a container if its config holds graphs."""
    if node.type in _TERMINAL:
        return "terminal"
    if node.type in _FAILURE:
        return "failure"
    if type(node.config).graphs:
        return "container"
    if node.type in _CONTROL or node.config.branches() is not None:
        return "control"
    return "data" if node.type in _DATA else "task"


def shape(node: PlanNode) -> Shape:
    """Terminals are stadiums, branching nodes rhombi, containers subroutines, the rest boxes."""
    if node.type in _TERMINAL:
        return "stadium"
    if type(node.config).graphs:
        return "subroutine"
    return "rhombus" if node.config.branches() is not None else "rectangle"


# -- mermaid ------------------------------------------------------------------------------------

_MERMAID_BRACKETS: dict[Shape, tuple[str, str]] = {
    "stadium": ("([", "])"),
    "rhombus": ("{", "}"),
    "subroutine": ("[[", "]]"),
    "rectangle": ("[", "]"),
}
_MERMAID_ESCAPES = str.maketrans(
    {"#": "#35;", '"': "#quot;", "&": "#amp;", "<": "#lt;", ">": "#gt;", "`": "#96;", "|": "#124;"}
)
# Words that end or restyle a block when used as a node id (`end` closes a subgraph).
_MERMAID_RESERVED = frozenset(
    {"end", "graph", "flowchart", "subgraph", "style", "class", "classDef", "click"}
    | {"linkStyle", "direction", "call", "href", "default"}
)


def to_mermaid(plan: Plan) -> str:
    """A ``flowchart TD``: shapes by type, branch labels on edges, bodies as subgraphs.

    Nested node ids are prefixed with their container and field (``each_body_wait``) and made
    unique; a dotted arrow leads from a container to each of its bodies.
    """
    ids = _mermaid_ids(plan)
    classes: dict[str, list[str]] = {}
    lines = ["flowchart TD"]
    _mermaid_graph(plan, (), ids, classes, lines, depth=1)
    for name, (fill, stroke) in (*FAMILY_COLOURS.items(), ("body", _BODY_COLOURS)):
        if name in classes:
            dash = ",stroke-dasharray:4 3" if name == "body" else ""
            lines.append(f"    classDef {name} fill:{fill},stroke:{stroke},color:#212121{dash}")
            lines.append(f"    class {','.join(classes[name])} {name}")
    return "\n".join(lines) + "\n"


def _mermaid_graph(
    plan: Plan,
    prefix: NodePath,
    ids: dict[NodePath, str],
    classes: dict[str, list[str]],
    lines: list[str],
    depth: int,
) -> None:
    pad = "    " * depth
    for node in _in_order(plan):
        node_key = ids[(*prefix, node.id)]
        opening, closing = _MERMAID_BRACKETS[shape(node)]
        label = f"{_mermaid_text(_title(node))}<br/>({_mermaid_text(node.type)})"
        lines.append(f'{pad}{node_key}{opening}"{label}"{closing}')
        classes.setdefault(family(node), []).append(node_key)
    links: list[str] = []
    for node in _in_order(plan):
        for field, body in _nested(node):
            body_key = ids[(*prefix, node.id, field)]
            title = _mermaid_text(f"{_title(node)} · {field}")
            lines.append(f'{pad}subgraph {body_key} ["{title}"]')
            lines.append(f"{pad}    direction TB")
            _mermaid_graph(body, (*prefix, node.id, field), ids, classes, lines, depth + 1)
            lines.append(f"{pad}end")
            classes.setdefault("body", []).append(body_key)
            links.append(f"{pad}{ids[(*prefix, node.id)]} -.-> {body_key}")
    for edge in _edges(plan):
        arrow = f'-->|"{_mermaid_text(edge.branch)}"|' if edge.branch else "-->"
        source, target = ids[(*prefix, edge.source)], ids[(*prefix, edge.target)]
        lines.append(f"{pad}{source} {arrow} {target}")
    lines.extend(links)


def _mermaid_ids(plan: Plan) -> dict[NodePath, str]:
    """Mermaid ids for every node and nested graph, breadth first so top-level ids stay as is."""
    ids: dict[NodePath, str] = {}
    used: set[str] = set()

    def take(path: NodePath) -> None:
        wanted = "_".join(path)
        candidate = f"{wanted}_" if wanted in _MERMAID_RESERVED else wanted
        suffix = 1
        while candidate in used:
            suffix += 1
            candidate = f"{wanted}_{suffix}"
        used.add(candidate)
        ids[path] = candidate

    queue: list[tuple[NodePath, Plan]] = [((), plan)]
    while queue:
        prefix, graph = queue.pop(0)
        for node in _in_order(graph):
            take((*prefix, node.id))
        for node in _in_order(graph):
            for field, body in _nested(node):
                take((*prefix, node.id, field))
                queue.append(((*prefix, node.id, field), body))
    return ids


def _mermaid_text(text: str) -> str:
    """Text safe inside a quoted Mermaid label: entity codes for the characters it parses."""
    return _one_line(text).translate(_MERMAID_ESCAPES)


# -- dot ----------------------------------------------------------------------------------------

_DOT_SHAPES: dict[Shape, str] = {
    "stadium": 'shape=box, style="rounded,filled"',
    "rhombus": "shape=diamond",
    "subroutine": "shape=box3d",
    "rectangle": "shape=box",
}


def to_dot(plan: Plan) -> str:
    """A Graphviz ``digraph`` (``rankdir=TB``): shapes and colours by type, branch labels on
    edges, each nested graph a ``cluster`` entered by a dashed edge from its container.
    """
    lines = [f"digraph {_dot_quote(plan.name or 'workflow')} {{", "    rankdir=TB;"]
    lines.append("    compound=true;")
    lines.append('    fontname="Helvetica";')
    if plan.name:
        lines.append(f"    label={_dot_quote(plan.name)};")
        lines.append("    labelloc=t;")
    lines.append('    node [fontname="Helvetica", fontsize=11, style=filled];')
    lines.append('    edge [fontname="Helvetica", fontsize=10];')
    _dot_graph(plan, (), lines, depth=1)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_graph(plan: Plan, prefix: NodePath, lines: list[str], depth: int) -> None:
    pad = "    " * depth
    for node in _in_order(plan):
        fill, stroke = FAMILY_COLOURS[family(node)]
        label = f"{_dot_escape(_title(node))}\\n({_dot_escape(node.type)})"
        lines.append(
            f'{pad}{_dot_id((*prefix, node.id))} [label="{label}", {_DOT_SHAPES[shape(node)]}, '
            f'fillcolor="{fill}", color="{stroke}"];'
        )
    links: list[str] = []
    for node in _in_order(plan):
        for field, body in _nested(node):
            path = (*prefix, node.id, field)
            cluster = _dot_quote("cluster_" + "/".join(path))
            lines.append(f"{pad}subgraph {cluster} {{")
            lines.append(f"{pad}    label={_dot_quote(f'{_title(node)} · {field}')};")
            lines.append(f'{pad}    style="dashed,rounded";')
            lines.append(f'{pad}    color="{FAMILY_COLOURS["container"][1]}";')
            _dot_graph(body, path, lines, depth + 1)
            lines.append(f"{pad}}}")
            entry = next(_in_order(body), None)
            if entry is not None:  # an edge into the cluster: drawn to its border (compound)
                links.append(
                    f"{pad}{_dot_id((*prefix, node.id))} -> {_dot_id((*path, entry.id))} "
                    f"[lhead={cluster}, style=dashed, arrowhead=empty];"
                )
    for edge in _edges(plan):
        attributes = f" [label={_dot_quote(edge.branch)}]" if edge.branch else ""
        source, target = _dot_id((*prefix, edge.source)), _dot_id((*prefix, edge.target))
        lines.append(f"{pad}{source} -> {target}{attributes};")
    lines.extend(links)


def _dot_id(path: NodePath) -> str:
    """Node ids never hold ``/``, so the joined path is unique across nested graphs."""
    return _dot_quote("/".join(path))


def _dot_escape(text: str) -> str:
    """Text safe inside a DOT quoted string and literal in a label (``\\N``, ``&amp;``)."""
    escaped = _one_line(text).replace("\\", "\\\\").replace('"', '\\"')
    return escaped.replace("&", "&amp;")


def _dot_quote(text: str) -> str:
    return f'"{_dot_escape(text)}"'


# -- ascii --------------------------------------------------------------------------------------


def to_ascii(plan: Plan) -> str:
    """Plain text: one line per node grouped by level, its outgoing edges after it, nested
    graphs indented under their container.

    ``[L1] check (if)  ──true──▶ notify, ──false──▶ log``
    """
    lines: list[str] = []
    if plan.name:
        levels = len(plan.levels)
        lines.append(f"workflow {_quoted(plan.name)} · {_count(plan)} nodes · {levels} levels")
    _ascii_graph(plan, "", lines)
    return "\n".join(lines) + "\n"


def _ascii_graph(plan: Plan, indent: str, lines: list[str]) -> None:
    for level, node_ids in enumerate(plan.levels):
        for node_id in node_ids:
            node = plan.nodes[node_id]
            name = f" {_quoted(node.options.name)}" if node.options.name else ""
            head = f"{indent}[L{level}] {node.id}{name} ({_one_line(node.type)})"
            arrows = ", ".join(_ascii_arrow(edge) for edge in _sorted(node.outgoing))
            lines.append(f"{head}  {arrows}" if arrows else head)
            for field, body in _nested(node):
                lines.append(f"{indent}     {field}:")
                _ascii_graph(body, indent + "       ", lines)


def _ascii_arrow(edge: PlanEdge) -> str:
    if edge.branch:
        return f"──{_one_line(edge.branch)}──▶ {edge.target}"
    return f"──▶ {edge.target}"


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _count(plan: Plan) -> int:
    return sum(1 + sum(_count(body) for _, body in _nested(node)) for node in plan.nodes.values())


# -- shared -------------------------------------------------------------------------------------


def _title(node: PlanNode) -> str:
    return node.options.name or node.id


def _in_order(plan: Plan) -> Iterator[PlanNode]:
    """Nodes in topological order, then any the order lacks (hand-built plans), by document."""
    listed = [node_id for node_id in plan.order if node_id in plan.nodes]
    seen = set(listed)
    for node_id in (*listed, *(n for n in plan.nodes if n not in seen)):
        yield plan.nodes[node_id]


def _edges(plan: Plan) -> list[PlanEdge]:
    return _sorted(plan.edges)


def _sorted(edges: list[PlanEdge]) -> list[PlanEdge]:
    return sorted(edges, key=lambda edge: edge.index)


def _nested(node: PlanNode) -> list[tuple[str, Plan]]:
    """A container's nested plans in the order its config declares the fields."""
    rank: dict[str, int] = {}
    for position, (attribute, info) in enumerate(type(node.config).model_fields.items()):
        rank[attribute] = position
        if info.alias:
            rank[info.alias] = position
    return sorted(node.graphs.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0]))


def _one_line(text: str) -> str:
    """Control characters (newlines, tabs) become spaces: every format here is line-based."""
    return "".join(" " if ord(char) < 32 or ord(char) == 127 else char for char in text)
