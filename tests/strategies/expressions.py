"""Expressions to throw at the evaluator: a grammar strategy, a corpus of known escapes, and the
run context they are evaluated over (shared by tests/unit/engine/test_expression_fuzz.py and
bench/fuzz_expressions.py).

The grammar follows ``app.engine.compile.expressions``: literals (``true``/``false``/``null``
too), the context's names and paths into them, subscripts and slices, arithmetic, comparisons,
boolean operators in both spellings, conditionals, list/dict literals, comprehensions, the
allowed functions and methods, and ``jsonpath`` calls. Generated expressions are meant to be
valid often, not always: a wrong type or an unknown key must fail as cleanly as a good one
evaluates.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def _deep(levels: int) -> Any:
    value: Any = {"leaf": 1}
    for i in range(levels):
        value = {"a": value, "i": i}
    return value


def context() -> dict[str, Any]:
    """The run context: the shapes a run holds (inputs, node results, vars, loop names), one
    wide list and one deep object (JSON trees, as run data always is)."""
    return {
        "inputs": {"x": 3, "y": -2.5, "name": "Ada", "tags": ["a", "b", "c"], "flag": True},
        "fetch": {
            "output": {
                "items": [{"price": i % 7, "name": f"item{i}", "tags": ["t"]} for i in range(50)],
                "status": 200,
                "text": "lorem ipsum " * 20,
            },
            "status": "completed",
        },
        "vars": {"count": 0, "seen": [], "limit": None},
        "item": {"id": 7, "values": [1, 2, 3]},
        "index": 2,
        "wide": {"rows": [{"k": i, "v": [i, i + 1], "s": str(i)} for i in range(2_000)]},
        "deep": _deep(60),
    }


NAMES = ("inputs", "fetch", "vars", "item", "index", "wide", "deep")
KEYS: tuple[str, ...] = (
    "x",
    "y",
    "name",
    "tags",
    "flag",
    "output",
    "items",
    "price",
    "status",
    "text",
    "rows",
)
KEYS += ("count", "seen", "limit", "id", "values", "a", "i", "leaf", "k", "v", "s", "missing")
FUNCTIONS: tuple[str, ...] = (
    "len",
    "str",
    "int",
    "float",
    "bool",
    "round",
    "abs",
    "min",
    "max",
    "sorted",
)
FUNCTIONS += ("any", "all", "list", "dict", "range", "sum")
METHODS: tuple[str, ...] = (
    "lower",
    "upper",
    "strip",
    "split",
    "startswith",
    "find",
    "count",
    "title",
    "replace",
)
METHODS += ("join", "get", "keys", "values", "items", "index", "removeprefix", "splitlines")
BINARY = ("+", "-", "*", "/", "//", "%", "**")
COMPARE = ("==", "!=", "<", "<=", ">", ">=", "in", "not in")
JSONPATHS = (
    "$.inputs.tags[*]",
    "$.fetch.output.items[*].price",
    "$.fetch.output.items[?(@.price > 3)].name",
    "$.wide.rows[0:10].k",
    "$.deep..leaf",
    "$..*",
    "$.fetch..name",
    "$.inputs.tags[-1:]",
)

_literals = st.one_of(
    st.integers(-1_000, 1_000).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.text(max_size=8).map(repr),
    st.sampled_from(("true", "false", "null", "None", "True", "[]", "{}", "()")),
)
_paths = st.builds(
    lambda name, keys: "".join([name, *(f".{k}" for k in keys)]),
    st.sampled_from(NAMES),
    st.lists(st.sampled_from(KEYS), max_size=3),
)
_atoms = st.one_of(_literals, _paths)


def _compound(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    two = st.tuples(inner, inner)
    return st.one_of(
        st.builds(lambda p, op: f"({p[0]} {op} {p[1]})", two, st.sampled_from(BINARY)),
        st.builds(lambda p, op: f"({p[0]} {op} {p[1]})", two, st.sampled_from(COMPARE)),
        st.builds(lambda p, op: f"({p[0]} {op} {p[1]})", two, st.sampled_from(("and", "or"))),
        st.builds(lambda p, op: f"({p[0]} {op} {p[1]})", two, st.sampled_from(("&&", "||"))),
        st.builds(lambda a, op: f"{op}{a}", inner, st.sampled_from(("!", "not ", "-", "+"))),
        st.builds(lambda a, b, c: f"({a} if {b} else {c})", inner, inner, inner),
        st.builds(lambda a, b: f"{a}[{b}]", inner, inner),
        st.builds(lambda a, b, c: f"{a}[{b}:{c}]", inner, _atoms, _atoms),
        st.builds(lambda xs: f"[{', '.join(xs)}]", st.lists(inner, max_size=4)),
        st.builds(lambda k, v: f"{{{k}: {v}}}", inner, inner),
        st.builds(lambda a, b: f"[{a} for x in {b}]", inner, inner),
        st.builds(lambda a, b, c: f"[x for x in {a} if {c}]", inner, inner, inner),
        st.builds(
            lambda f, xs: f"{f}({', '.join(xs)})",
            st.sampled_from(FUNCTIONS),
            st.lists(inner, max_size=3),
        ),
        st.builds(
            lambda a, m, xs: f"{a}.{m}({', '.join(xs)})",
            inner,
            st.sampled_from(METHODS),
            st.lists(inner, max_size=2),
        ),
        st.builds(lambda p: f"jsonpath({p!r})", st.sampled_from(JSONPATHS)),
        st.builds(lambda p, a: f"jsonpath_first({p!r}, {a})", st.sampled_from(JSONPATHS), inner),
    )


def grammar() -> st.SearchStrategy[str]:
    """Expressions built from the language's grammar, nested a few levels."""
    return st.recursive(_atoms, _compound, max_leaves=12)


def _sharing(levels: int) -> str:
    """A comprehension nested ``levels`` deep whose every level holds the one below twice:
    2**levels leaves in 2 * levels small lists."""
    source = "[1]"
    for i in range(levels):
        source = f"[[v{i}, v{i}] for v{i} in {source}]"
    return source


SHARING = _sharing(40)
# (label, expression): every entry must fail with an OxifyError or give a value, within the
# evaluation budget. The labels name the bench's rows.
CORPUS: tuple[tuple[str, str], ...] = (
    ("dunder walk", "().__class__.__bases__[0].__subclasses__()"),
    ("globals", "item.__globals__"),
    ("getattr", "getattr(item, '__class__')"),
    ("format attribute", "'{0.__class__}'.format(item)"),
    ("format method", "inputs.name.format(item)"),
    ("mapping attribute", "item.__class__"),
    ("import", "__import__('os').system('true')"),
    ("lambda", "(lambda: 1)()"),
    ("walrus", "(x := 1)"),
    ("f-string", "f'{item}'"),
    ("power tower", "9**9**9"),
    ("big repeat", "'a'*10**9"),
    ("repeat data", "inputs.name * 10**8"),
    ("list repeat", "[1] * 10**9"),
    ("shift", "1 << 10**9"),
    ("int digits", "int('9' * 5000)"),
    ("format width", "'%0100000000d' % 1"),
    ("format star", "'%*d' % (10**9, 1)"),
    ("complex power", "(-8) ** 0.5"),
    ("float overflow", "2.0 ** 10000"),
    ("10k parens", "(" * 10_000 + "1" + ")" * 10_000),
    ("99 parens", "(" * 99 + "1" + ")" * 99),
    ("deep lists", "[" * 90 + "]" * 90),
    ("101 nested lists", "[" * 101 + "]" * 101),
    ("200 nested lists", "[" * 200 + "]" * 200),
    ("unary chain", "-" * 1_999 + "1"),
    ("not chain", "not " * 400 + "true"),
    ("range product", "[a for a in range(10000) for b in range(10000)]"),
    ("nested comprehension", "[[a for a in range(10000)] for b in range(10000)]"),
    ("shared tree", SHARING),
    ("shared tree str", f"str({SHARING})"),
    ("shared tree compare", f"{SHARING} == {SHARING}"),
    ("shared tree format", f"'%s' % ({SHARING},)"),
    ("shared tree jsonpath", f"jsonpath('$..*', {SHARING})"),
    ("data repeated", "[wide] * 100000"),
    ("data in comprehension", "[wide for w in range(10000)]"),
    ("str of data", "str(wide)"),
    ("compare data", "wide == dict(wide)"),
    ("sort data", "sorted(wide.rows, key=1)"),
    ("join", "'x'.join(str(i) for i in range(10000))"),
    ("dict comprehension", "{i: i for i in range(10000)}"),
    ("jsonpath descendants", "jsonpath('$..*..*..*', deep)"),
    ("jsonpath context", "jsonpath('$.wide..*')"),
    ("jsonpath wide", "jsonpath('$..*..*..*..*', wide)"),
    ("jsonpath huge slice", "jsonpath('$.wide.rows[0:99999999999999999999:1]')"),
    ("jsonpath big index", f"jsonpath('$.inputs.tags[{10**30}]')"),
    ("jsonpath filter", "jsonpath('$.wide.rows[?(@.k > 5)][?(@.k > 6)][?(@.k > 7)]')"),
    ("jsonpath sorted", "jsonpath('$.wide.rows[/k]')"),
    ("jsonpath keys", "jsonpath('$.wide.rows[*].`keys`')"),
    ("jsonpath regex", "jsonpath('$.wide.rows[?(@.s =~ \"(a+)+$\")]')"),
    ("jsonpath bad", "jsonpath('$[')"),
    ("jsonpath computed", "jsonpath('$.wide.rows[' + str(10**30) + ']')"),
)
