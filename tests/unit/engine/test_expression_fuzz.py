"""The expression language under fuzzing (issue 16): whatever the text, compiling fails with
ExpressionError or gives an Expression, and evaluating gives a value or fails with an
ExpressionEvalError (ExpressionLimitExceeded when a budget ran out) — never another exception,
never past its budget, never a value larger (as a tree) than the byte limit.

Inputs: expressions generated from the grammar (tests/strategies/expressions.py), raw text,
templates, and a corpus of known escapes. Each evaluation runs under a small full budget so the
limit machinery, not the clock, is what stops it; speed is bench/fuzz_expressions.py's business.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.engine.compile.budget import Budget, Escalate
from app.engine.compile.expressions import Expression, compile_expression
from app.engine.compile.templates import compile_template
from app.engine.compile.tree_sizes import TreeSizes
from app.errors import ExpressionError, ExpressionEvalError, ExpressionLimitExceeded
from tests.strategies.expressions import CORPUS, SHARING, context, grammar

CPU_S = 0.02  # seconds of CPU one fuzzed evaluation may use
MAX_BYTES = 1 << 20  # bytes of values one fuzzed evaluation may build
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
NAMES = context()
VALUE_TYPES = (int, float, str, bool, type(None), list, dict, tuple, set)


def budget() -> Budget:
    return Budget.started(cpu_s=CPU_S, max_bytes=MAX_BYTES)


def outcome(source: str, names: dict[str, Any] = NAMES) -> Any:
    """Compile and evaluate ``source``: its value, or the OxifyError it failed with. Anything
    else fails the test."""
    try:
        expression = compile_expression(source)
    except ExpressionError as exc:
        assert exc.message
        return exc
    return evaluated(expression, names)


def evaluated(expression: Expression, names: dict[str, Any]) -> Any:
    try:
        value = expression.evaluate(names, budget())
    except ExpressionEvalError as exc:
        assert exc.message
        assert exc.source == expression.source
        return exc
    assert isinstance(value, VALUE_TYPES), type(value)
    assert tree_size(value) <= MAX_BYTES  # what it built (or read) is bounded
    return value


def tree_size(value: Any) -> int:
    sizes = TreeSizes()
    sizes.reset(Budget.started(cpu_s=60.0))
    return sizes.of(value)


@FUZZ
@given(grammar())
def test_grammar_expressions_give_a_value_or_a_clear_error(source: str) -> None:
    outcome(source)


@FUZZ
@given(st.text(max_size=200))
def test_any_text_gives_a_value_or_a_clear_error(source: str) -> None:
    outcome(source)


@FUZZ
@given(st.text(alphabet="()[]{}.,:'\"*+-/%<>=!&|~ 0123456789abxyz_", max_size=80))
def test_operator_soup_gives_a_value_or_a_clear_error(source: str) -> None:
    outcome(source)


@FUZZ
@given(grammar())
def test_an_inline_budget_only_ever_asks_to_escalate(source: str) -> None:
    try:
        expression = compile_expression(source)
    except ExpressionError:
        return
    with contextlib.suppress(ExpressionEvalError, Escalate):
        expression.evaluate(NAMES, Budget(max_bytes=MAX_BYTES))


@FUZZ
@given(st.lists(st.one_of(st.text(max_size=20), grammar().map("{{ %s }}".__mod__)), max_size=4))
def test_templates_render_or_fail_clearly(parts: list[str]) -> None:
    text = "".join(parts)
    try:
        template = compile_template(text)
    except ExpressionError as exc:
        assert exc.message
        return
    if isinstance(template, str):
        assert template is text
        return
    try:
        template.render(NAMES, budget())
    except ExpressionEvalError as exc:
        assert exc.message


@pytest.mark.parametrize(("label", "source"), CORPUS, ids=[label for label, _ in CORPUS])
def test_every_known_escape_ends_in_a_value_or_a_clear_error(label: str, source: str) -> None:
    outcome(source)


REFUSED: tuple[str, ...] = (
    "dunder walk",
    "globals",
    "getattr",
    "mapping attribute",
    "import",
    "lambda",
)
REFUSED += ("walrus", "f-string", "power tower", "big repeat", "10k parens", "200 nested lists")
REFUSED += ("jsonpath regex", "complex power")
STOPPED: tuple[str, ...] = (
    "shared tree",
    "shared tree str",
    "shared tree compare",
    "shared tree format",
)
STOPPED += ("shared tree jsonpath", "data repeated", "data in comprehension")
STOPPED += ("jsonpath descendants", "jsonpath wide")


@pytest.mark.parametrize("label", REFUSED)
def test_escapes_refused_when_compiling(label: str) -> None:
    assert isinstance(outcome(dict(CORPUS)[label]), ExpressionError)


@pytest.mark.parametrize("label", STOPPED)
def test_escapes_stopped_by_the_budget(label: str) -> None:
    assert isinstance(outcome(dict(CORPUS)[label]), ExpressionLimitExceeded)


# -- regressions -------------------------------------------------------------------------------


def test_a_value_sharing_its_parts_is_charged_as_the_tree_it_reads_as() -> None:
    """Bug: `[[v, v] for v in ...]` nested 40 deep built 2**40 leaves for 80 small lists; `str()`
    or `==` of it then ran in C for ever. Each new value is charged by its tree size now."""
    with pytest.raises(ExpressionLimitExceeded, match="bytes of values"):
        compile_expression(SHARING).evaluate({}, Budget.started(cpu_s=10.0))
    small = compile_expression("[[v, v] for v in [[w, w] for w in ['ab']]]").evaluate({})
    assert small == [[["ab", "ab"], ["ab", "ab"]]]


def test_placing_run_data_again_is_charged_for_its_whole_tree() -> None:
    names = {"doc": {"rows": list(range(1000))}}  # ~8 kB as a tree
    with pytest.raises(ExpressionLimitExceeded):
        compile_expression("[doc] * 1000").evaluate(names, Budget.started(max_bytes=100_000))
    assert len(compile_expression("[doc] * 10").evaluate(names, Budget.started())) == 10


def test_walking_a_value_in_c_is_charged_before_it_runs() -> None:
    """Bug: `str()`, comparisons, `%` and sorting of a large value were one step each, so an
    inline evaluation (on the event loop) could spend any time in one C call."""
    for source in ("str(wide)", "wide == wide", "'%s' % (wide,)", "sorted(wide.rows)"):
        with pytest.raises(Escalate):
            compile_expression(source).evaluate(NAMES, Budget())


def test_a_value_larger_than_the_byte_limit_is_not_walked() -> None:
    with pytest.raises(ExpressionLimitExceeded, match="would walk a value of"):
        compile_expression("str(wide)").evaluate(NAMES, Budget.started(max_bytes=10_000))


def test_dict_comprehension_keys_are_charged_for_hashing() -> None:
    """Bug: a big tuple used as a dict comprehension's key was hashed whole on every iteration,
    uncharged: 5x past the CPU budget between two clock checks."""
    key = "(1, 1)"
    for i in range(12):
        key = f"[(v{i}, v{i}) for v{i} in [{key}]][0]"
    source = f"[{{v: 1 for i in range(10000)}} for v in [{key}]]"
    with pytest.raises(ExpressionLimitExceeded):
        compile_expression(source).evaluate({}, Budget.started(cpu_s=CPU_S))


def test_a_fractional_power_of_a_negative_number_fails_clearly() -> None:
    """Bug: `(-8) ** 0.5` gave a complex number, which is no JSON value."""
    with pytest.raises(ExpressionError, match=r"\(-8\) \*\* 0.5 has no real value"):
        compile_expression("(-8) ** 0.5")
    with pytest.raises(ExpressionEvalError, match="has no real value"):
        compile_expression("inputs.y ** 0.5").evaluate(NAMES)
    assert compile_expression("inputs.y ** 2").evaluate(NAMES) == 6.25


def test_dict_unpacking_is_refused_when_compiling() -> None:
    """Bug: `{**x}` compiled, then failed with "KeyError: <class 'NoneType'>"."""
    with pytest.raises(ExpressionError, match=r"\*\* unpacking is not allowed in a dict"):
        compile_expression("{'a': 1, **inputs}")


def test_a_function_is_no_value() -> None:
    """Bug: a bare function name (`len`, `jsonpath`) evaluated to the Python function."""
    for source in ("len", "jsonpath", "max if true else 1"):
        with pytest.raises(ExpressionEvalError, match="is a function: call it"):
            compile_expression(source).evaluate({})
    assert compile_expression("max").evaluate({"max": 3}) == 3  # data named like a function


def test_sets_and_dict_keys_still_work() -> None:
    assert compile_expression("{(1, 2): 'a'}[(1, 2)]").evaluate({}) == "a"
    assert compile_expression("len({1, 2, 2})").evaluate({}) == 2
    assert compile_expression("{k: 1 for k in 'ab'}").evaluate({}) == {"a": 1, "b": 1}
