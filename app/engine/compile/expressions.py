"""The condition and template expression language: compiled once, evaluated many times.

Python expression syntax evaluated by simpleeval over JSON data, plus the seed's ``&&``, ``||``,
``!`` and the literals ``true``, ``false``, ``null``. ``!`` is exactly Python's ``not`` (same
precedence: ``!a == b`` means ``not (a == b)``; ``a == !b`` is a syntax error, as in Python).
Attribute access reads JSON, not Python objects:

- ``x.name`` on a mapping is the key ``"name"`` (so ``d.items`` is data, never ``dict.items``);
- ``x.name(...)`` calls an allow-listed method: on str ``lower upper strip lstrip rstrip
  startswith endswith split rsplit splitlines find count title capitalize isdigit isalpha
  isalnum isspace removeprefix removesuffix replace join`` (the last two size-bounded); on a
  mapping ``get keys values items`` (returning lists); on a list ``index count``. Nothing else.

This module is the evaluator, ``Expression`` and ``compile_expression``. Every evaluation runs
under a :class:`~app.engine.compile.budget.Budget`: each syntax node, comprehension iteration,
element a builtin walks and JSONPath step is charged, and so is every value it builds, by its
size as a tree (a single operation is kept small by the per-operation bounds of
``expression_vocabulary``; the budget bounds how many of them one evaluation makes). What
compares, hashes or writes out whole values in C (``==``, ``in`` a list, dict keys, ``str()``,
``%``, sorting) is charged their tree size before it runs (``tree_sizes``), so no single call
outlasts the budget. Literal arithmetic that exceeds those bounds (``9 ** 9 ** 9``) is refused
when compiling. The operator rewriting and the compile-time allow-lists live in
``expression_syntax``; the functions, methods and operators in ``expression_vocabulary``;
JSONPath in ``jsonpaths``.
"""

from __future__ import annotations

import ast
import contextlib
import threading
from collections.abc import Mapping
from typing import Any

import simpleeval

from app.engine.compile import expression_syntax, jsonpaths
from app.engine.compile import expression_vocabulary as vocabulary
from app.engine.compile.budget import Budget, BudgetExceeded, Escalate
from app.engine.compile.expression_vocabulary import MAX_INT_BITS, MAX_SIZE, Fail, describe, kind
from app.engine.compile.jsonpaths import compile_jsonpath
from app.engine.compile.tree_sizes import TreeSizes
from app.errors import ExpressionError, ExpressionEvalError, ExpressionLimitExceeded, OxifyError

__all__ = ["DEFAULT_MAX_EXPRESSION_LENGTH", "Expression", "compile_expression", "compile_jsonpath"]

DEFAULT_MAX_EXPRESSION_LENGTH = 2000  # characters
_MISSING: Any = object()
_CONTAINERS = (list, tuple, dict)
_MEMBERSHIP = (ast.In, ast.NotIn)
_BOUNDS = (Fail, simpleeval.NumberTooHigh, simpleeval.IterableTooLong, BudgetExceeded)
_LITERAL = (ast.BinOp, ast.UnaryOp, ast.Constant, ast.operator, ast.unaryop)


class _Evaluator(simpleeval.EvalWithCompoundTypes):  # type: ignore[misc]
    """A reusable evaluator whose name, attribute, index and call rules read JSON data, and
    which charges its work and what it builds to ``budget``."""

    def __init__(self) -> None:
        super().__init__(operators=vocabulary.OPERATORS)
        jsonpath_functions = {"jsonpath": self._jsonpath, "jsonpath_first": self._jsonpath_first}
        self.functions = vocabulary.FUNCTIONS | jsonpath_functions
        self.names: Mapping[str, Any] = {}
        self.budget = Budget()
        self.sizes = TreeSizes()
        self.keys: set[ast.expr] = set()  # keys of the dict comprehensions being evaluated

    def start(self, names: Mapping[str, Any], budget: Budget) -> None:
        """Evaluate over ``names`` next, charged to ``budget``."""
        self.names = names
        self.budget = budget
        self.sizes.reset(budget)

    def finish(self) -> None:
        """Let go of the last evaluation's names and values (the evaluator is pooled)."""
        self.names = {}
        self.sizes.reset(Budget())

    def _eval(self, node: ast.AST) -> Any:
        # Node types were allow-listed at compile time, so results need no scan (the base
        # class's recursive _check_disallowed_items would walk whole node outputs every time).
        # Outside comprehensions each node is evaluated at most once (the syntax is bounded),
        # so only comprehensions charge a step per node (see _eval_comprehension).
        return self.nodes[type(node)](node)

    def _eval_counted(self, node: ast.AST) -> Any:
        budget = self.budget
        budget.steps_left -= 1  # Budget.step(), inlined: this runs for every syntax node
        if budget.steps_left < 0:
            budget.step(0)
        value = self.nodes[type(node)](node)
        if self.keys and node in self.keys:  # a dict comprehension's key, hashed whole
            self.sizes.walk(value)
        return value

    def _built(self, value: Any) -> Any:
        return self.sizes.built(value)

    def _eval_name(self, node: ast.Name) -> Any:
        try:
            return self.names[node.id]
        except KeyError:
            if node.id in self.functions:
                return self.functions[node.id]
            raise Fail(f"unknown name {node.id!r}") from None

    def _eval_attribute(self, node: ast.Attribute) -> Any:
        obj = self._eval(node.value)
        if not isinstance(obj, Mapping):
            raise Fail(f"cannot read .{node.attr} of {kind(obj)} {describe(node.value)}")
        try:
            return obj[node.attr]
        except KeyError:
            raise Fail(f"no key {node.attr!r} in {describe(node.value)}") from None

    def _eval_subscript(self, node: ast.Subscript) -> Any:
        container, key = self._eval(node.value), self._eval(node.slice)
        self.sizes.walk(key)  # a tuple key is hashed whole
        try:
            value = container[key]
        except KeyError:
            raise Fail(f"no key {key!r} in {describe(node.value)}") from None
        except IndexError:
            where, size = describe(node.value), len(container)
            raise Fail(f"index {key} out of range for {where} (length {size})") from None
        return self._built(value) if isinstance(key, slice) else value

    def _eval_binop(self, node: ast.BinOp) -> Any:
        left, right = self._eval(node.left), self._eval(node.right)
        if isinstance(node.op, ast.Mod):
            self.sizes.walk(left, right)  # `'%s' % (value,)` writes the value out in C
        result = self.operators[type(node.op)](left, right)
        kind_ = type(result)
        if kind_ is int:
            if result.bit_length() > MAX_INT_BITS:
                raise Fail(f"{describe(node)} is too large (limit {MAX_INT_BITS} bits)")
        elif kind_ is str or kind_ is list or kind_ is tuple:
            self.sizes.built(result)
        return result

    def _eval_compare(self, node: ast.Compare) -> Any:
        # Comparing containers walks both in C; membership in a mapping hashes the key only.
        right, result = self._eval(node.left), True
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            left, right = right, self._eval(comparator)
            if isinstance(op, _MEMBERSHIP) and isinstance(right, Mapping):
                self.sizes.walk(left)
            else:
                self.sizes.walk(left, right)
            result = self.operators[type(op)](left, right)
            if not result:
                break
        return result

    def _eval_call(self, node: ast.Call) -> Any:
        if isinstance(node.func, ast.Attribute):
            name = node.func.attr
            obj = self._eval(node.func.value)
            func = vocabulary.method(obj, name, node.func.value)
            builds = name in vocabulary.BUILDING_METHODS
            walks = name in vocabulary.WALKING_METHODS
        else:
            name, obj = node.func.id, None  # type: ignore[attr-defined]
            func = self.functions[name]
            builds = name in vocabulary.BUILDING_FUNCTIONS
            walks = name in vocabulary.WALKING_FUNCTIONS
        kwargs = {str(kw.arg): self._eval(kw.value) for kw in node.keywords}
        args = [self._eval(arg) for arg in node.args]
        if walks:
            self.sizes.walk(obj, *args, *kwargs.values())
        elif name in vocabulary.ITERATING_FUNCTIONS:
            self.budget.step(sum(len(a) for a in args if isinstance(a, _CONTAINERS)))
        result = func(*args, **kwargs)
        return self._built(result) if builds else result

    def _eval_comprehension(self, node: ast.AST) -> Any:
        # Every node evaluated inside (once per iteration) is charged: swap in the counting
        # _eval on the instance for the duration (nested comprehensions find it already there).
        key = node.key if isinstance(node, ast.DictComp) else None
        if key is not None:
            self.keys.add(key)
        counting = "_eval" not in vars(self)
        if counting:
            self._eval = self._eval_counted  # type: ignore[method-assign]
        try:
            return self._built(super()._eval_comprehension(node))
        finally:
            if counting:
                del self._eval
            self.keys.discard(key)

    def _eval_list(self, node: ast.List) -> Any:
        return self._built(super()._eval_list(node))

    def _eval_dict(self, node: ast.Dict) -> Any:
        result = {}
        for key_node, value_node in zip(node.keys, node.values, strict=True):
            assert key_node is not None  # the syntax check refused ``{**x}``
            key = self._eval(key_node)
            self.sizes.walk(key)  # hashed whole
            result[key] = self._eval(value_node)
        return self._built(result)

    def _eval_tuple(self, node: ast.Tuple) -> Any:
        return self._built(super()._eval_tuple(node))

    def _eval_set(self, node: ast.Set) -> Any:
        items = [self._eval(item) for item in node.elts]
        self.sizes.walk(*items)  # each hashed whole
        return self._built(set(items))

    def _jsonpath(self, path: Any, value: Any = _MISSING) -> list[Any]:
        if not isinstance(path, str):
            raise Fail(f"jsonpath() needs a string path, not {kind(path)}")
        if len(path) > DEFAULT_MAX_EXPRESSION_LENGTH:
            limit = DEFAULT_MAX_EXPRESSION_LENGTH
            raise Fail(f"jsonpath of {len(path)} characters is too long (limit {limit})")
        compiled, roots = compile_jsonpath(path)
        if value is _MISSING:
            if roots is None:
                raise Fail(f"jsonpath {path!r} over the run context must start with a name")
            value = {}
            for name in roots:  # only the names the path starts from, never the whole context
                with contextlib.suppress(KeyError):
                    value[name] = self.names[name]
        with jsonpaths.charged_to(self.budget):
            found = compiled.find(value)
        matches = [match.value for match in found]
        self.sizes.built(matches)
        return matches

    def _jsonpath_first(self, path: Any, value: Any = _MISSING) -> Any:
        matches = self._jsonpath(path, value)
        return matches[0] if matches else None


class _Pool(threading.local):
    def __init__(self) -> None:
        self.free: list[_Evaluator] = []


_POOL = _Pool()


def _explain(exc: Exception) -> str:
    if isinstance(exc, simpleeval.IterableTooLong):
        return f"result would be too long (limit {MAX_SIZE} items)"
    if isinstance(exc, Fail | simpleeval.InvalidExpression | BudgetExceeded):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class Expression:
    """A compiled expression: parsed and checked once, then evaluated any number of times."""

    __slots__ = ("_tree", "names", "source")

    def __init__(self, source: str, tree: ast.expr, names: frozenset[str]) -> None:
        self.source = source
        self.names = names  # free top-level names, e.g. {"inputs", "fetch"}
        self._tree = tree

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    def evaluate(self, names: Mapping[str, Any], budget: Budget | None = None) -> Any:
        """Evaluate over ``names``, which is only indexed (never iterated, sized or copied).

        The work and the values built are charged to ``budget`` (default: a full budget that
        starts now); an inline budget running out raises
        :class:`~app.engine.compile.budget.Escalate`
        for the caller to evaluate again off the event loop. A full budget running out raises
        ExpressionLimitExceeded naming the limit; any other failure raises ExpressionEvalError
        naming the cause and the expression; errors Oxify raises on purpose (from a lazy scope,
        say) pass through unchanged. Thread-safe and re-entrant: each call borrows an evaluator
        from a per-thread pool.
        """
        free = _POOL.free
        evaluator = free.pop() if free else _Evaluator()
        evaluator.start(names, budget if budget is not None else Budget.started())
        try:
            value = evaluator.eval(self.source, previously_parsed=self._tree)
            if callable(value):  # a bare function name: a key= argument, never a value
                raise Fail(f"{describe(self._tree)} is a function: call it, e.g. len(x)")
            return value
        except (OxifyError, Escalate):
            raise
        except Exception as exc:
            shown = self.source if len(self.source) <= 200 else self.source[:197] + "..."
            message = f"{_explain(exc)} (in expression: {shown})"
            error = ExpressionLimitExceeded if isinstance(exc, BudgetExceeded) else None
            raise (error or ExpressionEvalError)(message, source=self.source) from exc
        finally:
            evaluator.finish()
            free.append(evaluator)


def compile_expression(
    source: str, *, max_length: int = DEFAULT_MAX_EXPRESSION_LENGTH
) -> Expression:
    """Parse and check ``source`` once, so that evaluating it can only fail on the data.

    Raises ExpressionError naming the problem: empty, too long, syntax error (with its column),
    statements, imports, underscored names or attributes, lambda, assignment, f-strings,
    unknown functions, a bad literal jsonpath, nesting deeper than
    ``expression_syntax.MAX_NESTING``, literal arithmetic past the evaluation bounds
    (``9 ** 9 ** 9``, ``'x' * 10 ** 6``).
    """
    if not source.strip():
        raise ExpressionError("expression is empty", source=source)
    if len(source) > max_length:
        message = f"expression is too long ({len(source)} characters, limit {max_length})"
        raise ExpressionError(message, source=source)
    tree, names = expression_syntax.parse(
        source,
        functions=vocabulary.FUNCTION_NAMES,
        operators=vocabulary.OPERATORS,
        jsonpath=compile_jsonpath,
    )
    _check_literals(tree, source)
    return Expression(source, tree, names)


def _check_literals(node: ast.AST, source: str) -> None:
    """Evaluate each largest subtree of literal arithmetic; refuse one past the bounds.

    Other failures (``1 / 0``) are left for run time: the subtree may sit in a branch that is
    never taken. Recursion is bounded: the syntax check limited the nesting depth.
    """
    if isinstance(node, ast.BinOp | ast.UnaryOp) and all(
        isinstance(n, _LITERAL) for n in ast.walk(node)
    ):
        try:
            Expression(source, node, frozenset()).evaluate({})
        except ExpressionEvalError as exc:
            cause = exc.__cause__
            if not isinstance(cause, _BOUNDS):
                return  # fails whatever the data (1 / 0): reported if it is ever evaluated
            message, shown = _explain(cause), describe(node)
            message += "" if shown in message else f" (in {shown})"
            raise ExpressionError(message, source=source) from None
        return
    for child in ast.iter_child_nodes(node):
        _check_literals(child, source)
