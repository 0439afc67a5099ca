"""The expression language's syntax: the seed's operators and the compile-time checks.

``translate`` rewrites ``&&``, ``||`` and ``!`` as Python's ``and``, ``or``, ``not`` (string
literals untouched, positions mapped back for errors); ``parse`` then parses the result and walks
the tree once against allow-lists of syntax node types, calls and keyword arguments, refusing the
rest with a message fit for a person and collecting the free names. The vocabulary (function
names, binary operators, jsonpath compiler) is passed in by ``expressions``, which evaluates.
"""

from __future__ import annotations

import ast
import contextlib
import threading
import warnings
from collections.abc import Callable, Container, Iterator
from typing import Any, NoReturn

from app.errors import ExpressionError

MAX_NESTING = 100  # levels of the syntax tree
_LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None}
_JsonpathCompiler = Callable[[str], tuple[object, frozenset[str] | None]]
_CONSTANTS = (str, int, float, bool, type(None))  # literal types that are JSON values
_WARNINGS_LOCK = threading.Lock()


# -- the seed's operators ----------------------------------------------------------------------


def skip_string(text: str, start: int) -> int:
    """Index just past the string literal opening at ``text[start]`` (a quote character).

    Handles triple quotes and backslash escapes; an unterminated literal runs to the end.
    """
    quote = text[start]
    delim = quote * 3 if text.startswith(quote * 3, start) else quote
    i = start + len(delim)
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text.startswith(delim, i):
            return i + len(delim)
        else:
            i += 1
    return len(text)


def translate(source: str) -> tuple[str, list[int]]:
    """Rewrite ``&&``, ``||`` and ``!`` (but not ``!=``) as ``and``, ``or``, ``not``.

    String literals are copied untouched. Returns the Python text and, for each of its
    characters, the index of the source character it came from (for error positions).
    """
    out: list[str] = []
    where: list[int] = []
    i = 0
    while i < len(source):
        char, pair = source[i], source[i : i + 2]
        if char in "'\"":
            piece = source[i : skip_string(source, i)]
            width = len(piece)
        elif pair in ("&&", "||"):
            piece, width = (" and " if pair == "&&" else " or "), 2
        elif char == "!" and pair != "!=":
            piece, width = " not ", 1
        else:
            piece = pair if pair == "!=" else char
            width = len(piece)
        out.append(piece)
        where.extend(range(i, i + width) if len(piece) == width else [i] * len(piece))
        i += width
    return "".join(out), where


# -- compile-time checks -----------------------------------------------------------------------


def parse(
    source: str,
    *,
    functions: frozenset[str],
    operators: Container[type],
    jsonpath: _JsonpathCompiler,
) -> tuple[ast.expr, frozenset[str]]:
    """Parse ``source`` and check it once, so that evaluating it can only fail on the data.

    ``functions`` are the names that may be called, ``operators`` the allowed binary operator
    node types, and ``jsonpath`` compiles a literal path (returning it and its root names).
    Returns the tree (``true``, ``false``, ``null`` already constants) and its free top-level
    names. Raises ExpressionError naming the problem, as ``expressions.compile_expression`` lists.
    """
    checker = _Checker(source, functions=functions, operators=operators, jsonpath=jsonpath)
    tree = checker.parse()
    checker.visit(tree.body, frozenset(), 0)
    tree = _Literals().visit(tree)  # recursion is safe: the checker bounded the depth
    return tree.body, frozenset(checker.names)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Parse without the warnings Python's tokenizer issues about some source (``1if``,
    ``'\\d'``): printed, they land on the service's stderr outside its log format; made errors
    (``-W error``, as the tests run) they escaped as exceptions no caller expects. The warning
    filters are process-wide, so parses take turns changing them."""
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


class _Literals(ast.NodeTransformer):
    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id in _LITERALS and isinstance(node.ctx, ast.Load):
            return ast.copy_location(ast.Constant(_LITERALS[node.id]), node)
        return node


_ALLOWED = (
    *(ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.IfExp, ast.Compare, ast.Constant, ast.keyword),
    *(ast.Attribute, ast.Subscript, ast.Slice, ast.List, ast.Tuple, ast.Dict, ast.Set),
    *(ast.boolop, ast.operator, ast.unaryop, ast.cmpop, ast.expr_context),
)
_REFUSALS = {
    ast.Lambda: "lambda is not allowed",
    ast.NamedExpr: "assignment (:=) is not allowed",
    ast.JoinedStr: "f-strings are not allowed (use a template or str())",
    ast.Starred: "* unpacking is only allowed inside a list",
    ast.SetComp: "set comprehensions are not supported",
}
_STATEMENTS = {ast.Import: "imports are", ast.ImportFrom: "imports are"} | dict.fromkeys(
    (ast.Assign, ast.AugAssign, ast.AnnAssign), "assignment is"
)
_COMPREHENSIONS = (ast.ListComp, ast.GeneratorExp, ast.DictComp)
_NOT_PARSED = (SyntaxError, RecursionError, MemoryError)


class _Checker:
    """Parses, then walks the tree once: refuses what is not allowed, collects free names."""

    def __init__(
        self,
        source: str,
        *,
        functions: frozenset[str],
        operators: Container[type],
        jsonpath: _JsonpathCompiler,
    ) -> None:
        self.source = source
        self.functions = functions
        self.operators = operators
        self.jsonpath = jsonpath
        self.names: set[str] = set()

    def fail(self, message: str) -> NoReturn:
        raise ExpressionError(message, source=self.source)

    def parse(self) -> ast.Expression:
        text, where = translate(self.source)
        lead = len(text) - len(text.lstrip())
        text, where = text.strip(), where[lead:]
        try:
            with _quiet():
                return ast.parse(text, mode="eval")
        except SyntaxError as exc:
            self._syntax_error(text, where, exc)
        except (RecursionError, MemoryError):
            self.fail("expression nested too deeply")

    def _syntax_error(self, text: str, where: list[int], exc: SyntaxError) -> NoReturn:
        with contextlib.suppress(*_NOT_PARSED):  # a statement rather than an expression?
            with _quiet():
                body = ast.parse(text).body
            kind = type(body[0]) if len(body) == 1 else ast.Expr
            if body:
                self.fail(
                    f"{_STATEMENTS.get(kind, 'statements are')} not allowed, only an expression"
                )
        with contextlib.suppress(*_NOT_PARSED), _quiet():  # an unparenthesized walrus?
            if any(isinstance(n, ast.NamedExpr) for n in ast.walk(ast.parse(f"({text})"))):
                self.fail(_REFUSALS[ast.NamedExpr])
        lines = text.split("\n")[: (exc.lineno or 1) - 1]
        index = sum(len(line) + 1 for line in lines) + (exc.offset or 0) - 1
        if not 0 <= index < len(where):
            self.fail(f"syntax error at the end of the expression: {exc.msg}")
        pos = where[index]
        line, col = self.source.count("\n", 0, pos) + 1, pos - self.source.rfind("\n", 0, pos)
        at = f"line {line}, column {col}" if "\n" in self.source.strip() else f"column {col}"
        self.fail(f"syntax error at {at}: {exc.msg} (near {self.source[pos : pos + 12]!r})")

    def visit(self, node: ast.AST, bound: frozenset[str], depth: int) -> None:
        if depth > MAX_NESTING:
            self.fail(f"expression nested too deeply (limit {MAX_NESTING} levels)")
        children: list[ast.AST] = list(ast.iter_child_nodes(node))
        if isinstance(node, ast.Name):
            self._name(node.id, bound, bare=True)
        elif isinstance(node, ast.Attribute | ast.Subscript):
            if isinstance(node, ast.Attribute):
                self._identifier(node.attr, "attributes")
            if isinstance(node.value, ast.Name):  # a path's base is data even if named `max`
                self._name(node.value.id, bound, bare=False)
        elif isinstance(node, ast.Call):
            children = self._call(node)
        elif isinstance(node, _COMPREHENSIONS):
            children = []
            self._comprehension(node, bound, depth)
        elif isinstance(node, ast.List):
            children = [e.value if isinstance(e, ast.Starred) else e for e in node.elts]
        elif isinstance(node, ast.Constant) and not isinstance(node.value, _CONSTANTS):
            self.fail(f"{type(node.value).__name__} literals are not allowed ({node.value!r})")
        elif isinstance(node, ast.Dict) and None in node.keys:
            self.fail("** unpacking is not allowed in a dict (write its keys out)")
        elif isinstance(node, ast.BinOp) and type(node.op) not in self.operators:
            self.fail(f"operator {type(node.op).__name__} is not allowed")
        elif not isinstance(node, _ALLOWED):
            self.fail(_REFUSALS.get(type(node), f"{type(node).__name__} is not allowed"))
        for child in children:
            self.visit(child, bound, depth + 1)

    def _identifier(self, name: str, what: str = "names") -> None:
        if name == "__import__":
            self.fail("imports are not allowed (__import__)")
        if name.startswith("_"):
            self.fail(f"{what} starting with '_' are not allowed ({name})")

    def _name(self, name: str, bound: frozenset[str], *, bare: bool) -> None:
        self._identifier(name)
        if name not in bound and name not in _LITERALS and not (bare and name in self.functions):
            self.names.add(name)

    def _call(self, node: ast.Call) -> list[ast.AST]:
        func = node.func
        if isinstance(func, ast.Name):
            if func.id not in self.functions:
                self._identifier(func.id)
                known = ", ".join(sorted(self.functions))
                self.fail(f"unknown function {func.id!r} (available: {known})")
            if func.id.startswith("jsonpath"):
                self._jsonpath(func.id, node)
        elif not isinstance(func, ast.Attribute):
            self.fail("only named functions and methods can be called")
        for kw in node.keywords:
            if kw.arg is None or kw.arg.startswith("_"):
                self.fail(f"keyword argument {kw.arg or '**'} is not allowed")
        return [*([func] if isinstance(func, ast.Attribute) else []), *node.args, *node.keywords]

    def _jsonpath(self, name: str, node: ast.Call) -> None:
        if node.keywords or not 1 <= len(node.args) <= 2:
            self.fail(f"{name}() takes a path and optionally a value")
        path = node.args[0]
        if not (isinstance(path, ast.Constant) and isinstance(path.value, str)):
            return  # computed: checked when evaluated
        try:
            roots = self.jsonpath(path.value)[1]
        except Exception as exc:
            self.fail(f"bad jsonpath {path.value!r}: {exc}")
        if len(node.args) == 1:
            if roots is None:
                self.fail(f"jsonpath {path.value!r} over the run context must start with a name")
            self.names.update(roots)

    def _comprehension(self, node: ast.AST, bound: frozenset[str], depth: int) -> None:
        generators: list[ast.comprehension] = node.generators  # type: ignore[attr-defined]
        inner = set(bound)
        for target in (t for gen in generators for t in ast.walk(gen.target)):
            if isinstance(target, ast.Name):
                self._identifier(target.id)
                inner.add(target.id)
            elif not isinstance(target, ast.Tuple | ast.expr_context):
                self.fail("comprehension targets must be names")
        self.visit(generators[0].iter, bound, depth + 1)  # the first iterable is outer scope
        rest = [*(g.iter for g in generators[1:]), *(i for g in generators for i in g.ifs)]
        if isinstance(node, ast.DictComp):
            rest += [node.key, node.value]
        else:
            rest.append(node.elt)  # type: ignore[attr-defined]
        for child in rest:
            self.visit(child, frozenset(inner), depth + 1)
