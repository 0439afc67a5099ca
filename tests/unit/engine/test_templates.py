from __future__ import annotations

from typing import Any

import pytest

from app.engine.compile.templates import (
    CompiledValue,
    Template,
    compile_template,
    compile_value,
    is_template,
)
from app.errors import ExpressionError, ExpressionEvalError

NAMES: dict[str, Any] = {
    "inputs": {"n": 3, "f": 1.5, "s": "hé", "l": [1, {"a": None}], "d": {"k": "v"}},
    "item": 4,
    "a": True,
    "b": False,
    "none": None,
}


def render(text: str, names: dict[str, Any] = NAMES) -> Any:
    template = compile_template(text)
    assert isinstance(template, Template)
    return template.render(names)


def template_error(text: str) -> str:
    with pytest.raises(ExpressionError) as info:
        compile_template(text)
    return info.value.message


# -- compile_template ------------------------------------------------------------------------


def test_plain_strings_are_returned_unchanged() -> None:
    text = "no braces { here } at all"
    assert compile_template(text) is text
    assert not is_template(text)
    assert is_template("a {{ b }}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ inputs.n }}", 3),
        ("  {{ inputs.f }}\n", 1.5),
        ("{{inputs.l}}", [1, {"a": None}]),
        ("{{ inputs.d }}", {"k": "v"}),
        ("{{ none }}", None),
        ("{{ a && b }}", False),
        ("{{ item * 2 }}", 8),
        ("{{ inputs.s }}", "hé"),
        ("{{ {'a': {'b': [1]}} }}", {"a": {"b": [1]}}),
    ],
)
def test_a_lone_template_keeps_the_value_type(text: str, expected: Any) -> None:
    value = render(text)
    assert value == expected
    assert type(value) is type(expected)


def test_a_lone_template_returns_the_value_itself() -> None:
    assert render("{{ inputs.l }}") is NAMES["inputs"]["l"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("n={{ inputs.n }}", "n=3"),
        ("f={{ inputs.f }}", "f=1.5"),
        ("s={{ inputs.s }}!", "s=hé!"),
        ("[{{ none }}]", "[]"),
        ("{{ a }}/{{ b }}", "true/false"),
        ("l={{ inputs.l }}", 'l=[1,{"a":null}]'),
        ("d={{ inputs.d }}", 'd={"k":"v"}'),
        ("{{ item }}{{ item }}", "44"),
        ("x {{ '}}' }} y", "x }} y"),
        ("{{ x}}}", "1}"),
    ],
)
def test_text_interpolation_rules(text: str, expected: Any) -> None:
    assert render(text, {**NAMES, "x": 1}) == expected


def test_values_that_are_not_json_cannot_be_written_as_text() -> None:
    template = compile_template("x={{ {1, 2} }}")
    assert isinstance(template, Template)
    with pytest.raises(ExpressionEvalError, match="cannot write the value of"):
        template.render(NAMES)


def test_template_names_are_the_union_of_its_parts() -> None:
    template = compile_template("{{ inputs.n }} and {{ fetch.output.x && !flag }}")
    assert isinstance(template, Template)
    assert template.names == frozenset({"inputs", "fetch", "flag"})
    assert template.source == "{{ inputs.n }} and {{ fetch.output.x && !flag }}"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("hello {{ name", "unterminated '{{' in template part 1 (at position 6)"),
        ("{{ a }} {{ 'oops }}", "unterminated '{{' in template part 2"),
        ("a {{ }} b", "empty template part 1 (at position 2)"),
        ("{{ 1 }} {{ a + }}", "template part 2 {{ a + }}: syntax error"),
        ("{{ x.__class__ }}", "template part 1 {{ x.__class__ }}: attributes starting with '_'"),
    ],
)
def test_template_errors_say_which_part(text: str, fragment: str) -> None:
    assert fragment in template_error(text)


def test_max_length_bounds_each_expression() -> None:
    assert isinstance(compile_template("{{ 1 + 1 }} {{ 2 + 2 }}", max_length=6), Template)
    with pytest.raises(ExpressionError, match="too long"):
        compile_template("{{ 1 + 1 + 1 }}", max_length=6)


def test_render_failures_are_expression_eval_errors() -> None:
    template = compile_template("total: {{ inputs.missing }}")
    assert isinstance(template, Template)
    with pytest.raises(ExpressionEvalError, match="no key 'missing' in inputs"):
        template.render(NAMES)


# -- compile_value ---------------------------------------------------------------------------


def test_constant_values_render_to_themselves() -> None:
    value = {"url": "https://example.com", "retries": [1, 2, {"x": None}], "on": True}
    compiled = compile_value(value)
    assert compiled.is_constant
    assert compiled.names == frozenset()
    assert compiled.render(NAMES) is value
    assert compile_value("plain").render(NAMES) == "plain"
    assert compile_value(7).render({}) == 7


def test_nested_templates_render_into_a_new_structure_sharing_constants() -> None:
    value = {
        "value": {"items": [1, "{{ item }}", "x{{ item }}"], "fixed": {"deep": [1]}},
        "n": "{{ inputs.n }}",
        "t": ("{{ a }}", 2),
    }
    compiled = compile_value(value)
    assert isinstance(compiled, CompiledValue)
    assert not compiled.is_constant
    assert compiled.names == frozenset({"item", "inputs", "a"})
    first = compiled.render(NAMES)
    assert first == {
        "value": {"items": [1, 4, "x4"], "fixed": {"deep": [1]}},
        "n": 3,
        "t": [True, 2],
    }
    assert first["value"]["fixed"] is value["value"]["fixed"]  # type: ignore[index]
    second = compiled.render({**NAMES, "item": 5})
    assert second["value"]["items"] == [1, 5, "x5"]
    assert first["value"]["items"] == [1, 4, "x4"]
    assert value["value"]["items"] == [1, "{{ item }}", "x{{ item }}"]  # type: ignore[index]


def test_dict_keys_are_never_templates() -> None:
    compiled = compile_value({"{{ item }}": 1})
    assert compiled.is_constant
    assert compiled.render(NAMES) == {"{{ item }}": 1}


@pytest.mark.parametrize(
    ("value", "pointer", "expected"),
    [
        ({"value": {"items": [1, 2, "{{ a + }}"]}}, "", "/value/items/2"),
        ({"items": ["{{ a + }}"]}, "/nodes/3/config", "/nodes/3/config/items/0"),
        ({"a/b": {"c~d": "{{"}}, "", "/a~1b/c~0d"),
        ("{{ }}", "/outputs/x", "/outputs/x"),
        ("{{ }}", "", ""),
    ],
)
def test_bad_templates_are_reported_with_their_json_pointer(
    value: Any, pointer: str, expected: str
) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_value(value, pointer=pointer)
    assert info.value.pointer == expected  # type: ignore[attr-defined]
    assert info.value.message.startswith(f"bad template at {expected!r}: ")


def test_compile_value_passes_max_length_down() -> None:
    with pytest.raises(ExpressionError, match="too long"):
        compile_value({"a": ["{{ 1 + 1 + 1 }}"]}, max_length=6)


def test_render_failures_inside_values_raise_expression_eval_errors() -> None:
    compiled = compile_value({"a": ["{{ 1 / 0 }}"]})
    with pytest.raises(ExpressionEvalError, match="ZeroDivisionError"):
        compiled.render(NAMES)
