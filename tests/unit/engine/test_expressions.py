from __future__ import annotations

import ast
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.engine.compile import expression_syntax, expressions
from app.engine.compile.expressions import Expression, compile_expression
from app.errors import ExpressionError, ExpressionEvalError, NodeError

CONTEXT: dict[str, Any] = {
    "inputs": {"x": 3, "name": "Ada", "tags": ["a", "b"]},
    "fetch": {
        "output": {
            "items": [{"price": 2, "name": "pen"}, {"price": 5, "name": "ink"}],
            "keys": "data, not dict.keys",
            "values": [1, 2],
        },
        "status": "completed",
    },
    "a": {"b": 4},
    "c": True,
    "f": False,
    "n": None,
}


def ev(source: str, names: Mapping[str, Any] = CONTEXT) -> Any:
    return compile_expression(source).evaluate(names)


def compile_error(source: str) -> str:
    with pytest.raises(ExpressionError) as info:
        compile_expression(source)
    assert info.value.source == source
    return info.value.message


def eval_error(source: str, names: Mapping[str, Any] = CONTEXT) -> ExpressionEvalError:
    expression = compile_expression(source)
    with pytest.raises(ExpressionEvalError) as info:
        expression.evaluate(names)
    assert info.value.source == source
    assert source in info.value.message
    return info.value


class SpyScope(Mapping[str, Any]):
    """A lazy scope: records lookups and refuses to be iterated, copied or sized."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.looked_up: list[str] = []

    def __getitem__(self, name: str) -> Any:
        self.looked_up.append(name)
        return self.data[name]

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("the scope must not be iterated")

    def __len__(self) -> int:
        raise AssertionError("the scope must not be sized")


# -- operators -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("c && f", False),
        ("c || f", True),
        ("!f", True),
        ("!c", False),
        ("!!c", True),
        ("c&&!f", True),
        ("!(a.b == 4)", False),
        ("a.b != 4", False),
        ("a.b!=3", True),
        ("!f && a.b != 3 || f", True),
        ("f || !f && f", False),  # && binds tighter than ||, as in the seed
        ("c and not f", True),
        ("f or c", True),
    ],
)
def test_seed_and_python_boolean_operators(source: str, expected: bool) -> None:
    assert ev(source) is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("'a && b'", "a && b"),
        ('"x || y"', "x || y"),
        ("'!'", "!"),
        ("'!=' + \"!\"", "!=!"),
        ("'it\\'s && fine'", "it's && fine"),
        ('"""triple " && ! ||"""', 'triple " && ! ||'),
        ("'&&' if c && !f else '||'", "&&"),
    ],
)
def test_operators_inside_string_literals_are_untouched(source: str, expected: str) -> None:
    assert ev(source) == expected


def test_translate_maps_positions_back_to_the_source() -> None:
    text, where = expression_syntax.translate("a&&b")
    assert text == "a and b"
    assert len(where) == len(text)
    assert [where[k] for k in range(len(text))] == [0, 1, 1, 1, 1, 1, 3]


@given(st.text(max_size=40))
def test_any_string_literal_survives_translation(value: str) -> None:
    assert ev(f"{value!r} == v && true", {"v": value}) is True


@given(st.text(alphabet=st.characters(blacklist_characters="&|!'\"")))
def test_translation_is_identity_without_seed_operators(text: str) -> None:
    assert expression_syntax.translate(text) == (text, list(range(len(text))))


@given(st.booleans(), st.booleans(), st.booleans())
def test_seed_operators_mean_python_ones(a: bool, b: bool, c: bool) -> None:
    names = {"a": a, "b": b, "c": c}
    assert ev("a && b || !c", names) == ((a and b) or (not c))
    assert ev("!a || b && c", names) == ((not a) or (b and c))


def test_true_false_null_are_literals() -> None:
    assert ev("true") is True
    assert ev("false") is False
    assert ev("null") is None
    assert ev("n == null && c == true && f == false") is True
    assert compile_expression("true && x").names == frozenset({"x"})


# -- data access -----------------------------------------------------------------------------


def test_dotted_paths_and_indexes() -> None:
    assert ev("fetch.output.items[1].price") == 5
    assert ev("fetch.output.items[-1]['name']") == "ink"
    assert ev("inputs.x * 2 + a['b']") == 10
    assert ev("inputs.tags[0:1]") == ["a"]


def test_mapping_attributes_are_keys_never_dict_methods() -> None:
    assert ev("fetch.output.keys") == "data, not dict.keys"
    assert ev("fetch.output.values") == [1, 2]
    message = eval_error("fetch.output.items[0].items").message
    assert message.startswith("no key 'items' in fetch.output.items[0]")


def test_allow_listed_methods_are_called() -> None:
    assert ev("inputs.name.lower() + inputs.name.upper()") == "adaADA"
    assert ev("'a,b'.split(',')") == ["a", "b"]
    assert ev("' x '.strip().startswith('x')") is True
    assert ev("'-'.join(inputs.tags)") == "a-b"
    assert ev("a.get('zz', 7)") == 7
    assert ev("a.keys()") == ["b"]
    assert ev("a.values()") == [4]
    assert ev("{k: v + 1 for k, v in a.items()}") == {"b": 5}
    assert ev("inputs.tags.index('b') + inputs.tags.count('a')") == 2


@pytest.mark.parametrize(
    ("source", "start"),
    [
        ("inputs.name.format(1)", "no method format() on str inputs.name"),
        ("inputs.tags.append(1)", "no method append() on list inputs.tags"),
        ("inputs.x.bit_length()", "no method bit_length() on int inputs.x (allowed: none)"),
        ("inputs.name.upper", "cannot read .upper of str inputs.name"),
        ("n.x", "cannot read .x of null n"),
    ],
)
def test_methods_outside_the_allow_list_fail(source: str, start: str) -> None:
    assert eval_error(source).message.startswith(start)


@pytest.mark.parametrize(
    ("source", "start"),
    [
        ("missing + 1", "unknown name 'missing'"),
        ("a.zz", "no key 'zz' in a"),
        ("a['zz']", "no key 'zz' in a"),
        ("fetch.output.items[9]", "index 9 out of range for fetch.output.items (length 2)"),
        ("1 / 0", "ZeroDivisionError: division by zero"),
        ("inputs.name > 1", "TypeError: '>' not supported"),
        ("int('x')", "ValueError: invalid literal"),
    ],
)
def test_evaluation_failures_name_the_cause_and_the_expression(source: str, start: str) -> None:
    error = eval_error(source)
    assert error.message.startswith(start)
    assert error.code == "expression_failed"
    assert error.__cause__ is not None


def test_errors_raised_on_purpose_by_the_scope_pass_through() -> None:
    class FailingScope(SpyScope):
        def __getitem__(self, name: str) -> Any:
            raise NodeError("upstream failed")

    with pytest.raises(NodeError, match="upstream failed"):
        compile_expression("x + 1").evaluate(FailingScope({}))


def test_functions() -> None:
    assert ev("len(inputs.tags) + abs(-1) + round(2.6) + int('3') + sum([1, 2])") == 12
    assert ev("min(1, 2) + max([3, 4]) + float('0.5')") == 5.5
    assert ev("sorted(fetch.output.items, key=len)[0]['name']") == "pen"
    assert ev("any(i.price > 4 for i in fetch.output.items)") is True
    assert ev("all([i.price > 4 for i in fetch.output.items])") is False
    assert ev("str(inputs.x) + str(bool(0))") == "3False"
    assert ev("list(range(2, 5)) + [*range(2)]") == [2, 3, 4, 0, 1]
    assert ev("dict(a=1)") == {"a": 1}
    assert ev("inputs.x if c else 0") == 3


def test_comprehension_variables_shadow_and_are_not_free_names() -> None:
    expression = compile_expression("[item.price * 2 for item in fetch.output.items if c]")
    assert expression.evaluate(CONTEXT) == [4, 10]
    assert expression.names == frozenset({"fetch", "c"})


def test_names_are_the_free_top_level_names() -> None:
    source = "inputs.x + len(fetch.output.items) + vars['y'] + max(1, 2) > 3 && !done"
    assert compile_expression(source).names == frozenset({"inputs", "fetch", "vars", "done"})
    assert compile_expression("1 + 2").names == frozenset()
    # A node may be called like a function; as a base of a path it is data.
    assert compile_expression("max.output").names == frozenset({"max"})
    assert compile_expression("max.output").evaluate({"max": {"output": 1}}) == 1


# -- jsonpath --------------------------------------------------------------------------------


def test_jsonpath_over_the_context_and_over_a_value() -> None:
    assert ev("jsonpath('$.fetch.output.items[*].price')") == [2, 5]
    assert ev("jsonpath('$.items[*].name', fetch.output)") == ["pen", "ink"]
    assert ev("jsonpath('$.items[?(@.price > 3)].name', fetch.output)") == ["ink"]
    assert ev("jsonpath('$..price', fetch)") == [2, 5]
    assert ev("jsonpath_first('$.fetch.output.items[*].price')") == 2
    assert ev("jsonpath_first('$.nothing')") is None
    assert ev("jsonpath_first('$.missing', a)") is None
    assert ev("sum(jsonpath('$.fetch.output.items[*].price')) > 6 && c") is True


def test_jsonpath_over_the_context_reads_only_the_names_it_starts_from() -> None:
    scope = SpyScope(dict(CONTEXT))
    expression = compile_expression("jsonpath('$.fetch.output.items[*].price')")
    assert expression.names == frozenset({"fetch"})
    assert expression.evaluate(scope) == [2, 5]
    assert scope.looked_up == ["fetch"]


def test_jsonpath_with_a_computed_path_is_checked_when_evaluated() -> None:
    assert ev("jsonpath(p)", {"p": "$.a.b", "a": {"b": 1}}) == [1]
    assert eval_error("jsonpath(p)", {"p": "$..b"}).message.startswith(
        "jsonpath '$..b' over the run context must start with a name"
    )
    assert "needs a string path" in eval_error("jsonpath(1)").message


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("jsonpath('$[')", "bad jsonpath '$['"),
        ("jsonpath('$.a | $.b')", "the '|' operator is not supported"),
        ("jsonpath('$.a[?(@.b > 1 & @.c)]', a)", "the '&' operator is not supported"),
        ("jsonpath('$.a * 100000000', a)", "arithmetic and regular expressions"),
        ("jsonpath(\"$.a[?(@.b =~ '(x+)+y')]\", a)", "arithmetic and regular expressions"),
        ("jsonpath('$.a.`sub(/x/, y)`', a)", "arithmetic and regular expressions"),
        ("jsonpath('$..price')", "must start with a name"),
        ("jsonpath_first('$[*]')", "must start with a name"),
        ("jsonpath()", "takes a path and optionally a value"),
        ("jsonpath('$.a', a, a)", "takes a path and optionally a value"),
    ],
)
def test_bad_literal_jsonpaths_fail_at_compile_time(source: str, fragment: str) -> None:
    assert fragment in compile_error(source)


def test_compiled_jsonpaths_are_cached() -> None:
    first = expressions.compile_jsonpath("$.fetch.output")
    assert expressions.compile_jsonpath("$.fetch.output") is first


# -- sandbox ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("x.__class__", "attributes starting with '_' are not allowed (__class__)"),
        ("x._private", "attributes starting with '_' are not allowed (_private)"),
        ("_x + 1", "names starting with '_' are not allowed (_x)"),
        ("__import__('os')", "imports are not allowed (__import__)"),
        ("import os", "imports are not allowed"),
        ("from os import path", "imports are not allowed"),
        ("lambda: 1", "lambda is not allowed"),
        ("(y := 1)", "assignment (:=) is not allowed"),
        ("y := 1", "assignment (:=) is not allowed"),
        ("x = 1", "assignment is not allowed"),
        ("x += 1", "assignment is not allowed"),
        ("a; b", "statements are not allowed, only an expression"),
        ("for x in y: pass", "statements are not allowed"),
        ("open('/etc/passwd')", "unknown function 'open'"),
        ("getattr(x, 'y')", "unknown function 'getattr'"),
        ("x[0]()", "only named functions and methods can be called"),
        ("len(*x)", "* unpacking is only allowed inside a list"),
        ("dict(**x)", "keyword argument ** is not allowed"),
        ("f'{x}'", "f-strings are not allowed"),
        ("{v for v in x}", "set comprehensions are not supported"),
        ("[v for v.a in x]", "comprehension targets must be names"),
        ("[1 for _v in x]", "names starting with '_' are not allowed"),
        ("a @ b", "operator MatMult is not allowed"),
        ("1 + " * 150 + "1", "nested too deeply"),
    ],
)
def test_disallowed_constructs_fail_at_compile_time(source: str, fragment: str) -> None:
    assert fragment in compile_error(source)


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("", "expression is empty"),
        ("   ", "expression is empty"),
        ("a +", "syntax error at the end of the expression"),
        ("a b", "syntax error at column 3: invalid syntax (near 'b')"),
        ("x && && y", "syntax error at column 6"),
        ("a ==\n)", "syntax error at line 2, column 1"),
        ("a == !b", "syntax error at column 6"),  # `!` is `not`, with Python's precedence
    ],
)
def test_empty_and_syntax_errors_say_where(source: str, fragment: str) -> None:
    assert fragment in compile_error(source)


def test_length_limit() -> None:
    source = "1 + " * 500 + "1"
    assert len(source) > expressions.DEFAULT_MAX_EXPRESSION_LENGTH
    assert "too long (2001 characters, limit 2000)" in compile_error(source)
    with pytest.raises(ExpressionError, match="limit 10"):
        compile_expression("12345 + 12345", max_length=10)


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("2 ** (inputs.x * 33334)", "2 ** 100002 is too large"),
        ("10 ** 10 ** (inputs.x + 2)", "10 ** 100000 is too large"),
        ("'x' * 10 ** (inputs.x * 2)", "too long"),
        ("[0] * 10 ** 6", "too long"),
        ("range(10 ** 6)", "range() of 1000000 items is too long"),
        ("'a' * (inputs.x * 30000) + 'a' * 90000", "too long"),
        ("('a' * 50000).replace('a', 'aaa')", "replace() would be too long"),
        ("('x' * 60000).join(['a', 'b', 'c'])", "join() would be too long"),
        ("1 << (inputs.x * 33334)", "1 << 100002"),
        ("(1 << 9000) * (1 << inputs.x * 1000)", "too large (limit 10000 bits)"),
        ("'%0100000000d' % inputs.x", "format width or precision is over 1000"),
        ("'%*d' % (inputs.x, 1)", "format width or precision is over 1000"),
        ("sum([[1]] * inputs.x, [])", "sum() adds numbers"),
        ("[x for x in range(10000) for y in range(10000)]", "too long"),
    ],
)
def test_resource_limits_fail_with_a_clear_error(source: str, fragment: str) -> None:
    assert fragment in eval_error(source).message


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("9 ** 9 ** 9", "9 ** 387420489 is too large (limit 10000 bits)"),
        ("2 ** 100000", "2 ** 100000 is too large"),
        ("inputs.x + 10 ** 10 ** 10", "10 ** 10000000000 is too large"),
        ("'x' * 10 ** 6", "too long (limit 100000 items) (in 'x' * 10 ** 6)"),
        ("'a' * 90000 + 'a' * 90000", "too long"),
        ("1 << 100000", "1 << 100000"),
        ("(1 << 9000) * (1 << 9000)", "too large (limit 10000 bits)"),
        ("'%0100000000d' % 1", "format width or precision is over 1000"),
    ],
)
def test_literal_arithmetic_past_the_bounds_fails_at_compile_time(
    source: str, fragment: str
) -> None:
    assert fragment in compile_error(source)


@pytest.mark.parametrize("source", ["1 / 0", "c or 1 / 0", "'a' - 1", "2 ** 64 + 1", "1 << 100"])
def test_other_literal_failures_and_big_ints_are_left_to_run_time(source: str) -> None:
    compile_expression(source)


def test_small_powers_still_work() -> None:
    assert ev("2 ** 10 + 1 ** 10 ** 9 + (-1) ** 3") == 1024
    assert ev("2 ** -1") == 0.5


# -- compile once, evaluate many times -------------------------------------------------------


def test_evaluation_never_parses_again(monkeypatch: pytest.MonkeyPatch) -> None:
    expression = compile_expression("a.b > 3 && c")

    def no_parse(*args: Any, **kwargs: Any) -> ast.AST:
        raise AssertionError("parsed at evaluation time")

    monkeypatch.setattr(ast, "parse", no_parse)
    for value in range(100):
        assert expression.evaluate({"a": {"b": value}, "c": True}) is (value > 3)


def test_evaluators_are_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[object] = []
    original = expressions._Evaluator.__init__

    def counting(self: Any) -> None:
        created.append(self)
        original(self)

    monkeypatch.setattr(expressions._Evaluator, "__init__", counting)
    expression = compile_expression("x + 1")
    for value in range(50):
        assert expression.evaluate({"x": value}) == value + 1
    assert len(created) <= 1


def test_evaluation_is_reentrant() -> None:
    inner = compile_expression("y * 10")

    class DerivedScope(SpyScope):
        def __getitem__(self, name: str) -> Any:
            if name == "derived":
                return inner.evaluate({"y": self.data["y"]})
            return super().__getitem__(name)

    scope = DerivedScope({"y": 4, "z": 1})
    assert compile_expression("z + derived + z").evaluate(scope) == 42


def test_evaluation_is_thread_safe() -> None:
    expression = compile_expression("[v * k for v in range(20)][-1] + len(jsonpath('$.k'))")
    barrier = threading.Barrier(8)

    def work(k: int) -> list[int]:
        barrier.wait()
        return [expression.evaluate({"k": k}) for _ in range(200)]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(8)))
    assert results == [[19 * k + 1] * 200 for k in range(8)]


def test_expression_is_a_small_value() -> None:
    expression = compile_expression("inputs.x")
    assert isinstance(expression, Expression)
    assert expression.source == "inputs.x"
    assert repr(expression) == "Expression('inputs.x')"
