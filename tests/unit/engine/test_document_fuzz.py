"""Validation under fuzzing (issue 16), straight against the engine: documents drawn from the
workflow JSON Schema, and broken ones, are planned or refused with a list of problems — never
another exception — and every problem points into the document (RFC 6901, see
tests/strategies/documents.py). The same documents go through the API in
tests/api/test_document_fuzz.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from app.engine.compile.graph import plan_workflow, validate_workflow
from app.errors import ErrorDetail, WorkflowInvalid
from tests.strategies.documents import (
    MEGABYTE_STRING,
    Unresolved,
    documents,
    mutated,
    nested,
    points_into,
    resolve,
)

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def assert_points_into(document: Any, errors: list[ErrorDetail]) -> None:
    for error in errors:
        assert error.message, error
        assert error.code, error
        assert points_into(document, error.pointer, error.code, error.message), error


def checked(document: dict[str, Any]) -> list[ErrorDetail]:
    """Validate and plan ``document``: both agree, and every problem points into it."""
    errors = validate_workflow(document)
    assert_points_into(document, errors)
    if errors:
        with pytest.raises(WorkflowInvalid) as info:
            plan_workflow(document)
        assert info.value.errors == errors
    else:
        assert plan_workflow(document).node_count >= 1
    return errors


@FUZZ
@given(documents())
def test_documents_from_the_schema_plan_or_point_at_their_problems(document: Any) -> None:
    checked(document)


@FUZZ
@given(mutated())
def test_broken_documents_point_at_their_problems(document: Any) -> None:
    assert checked(document) or document


@pytest.mark.parametrize("depth", [4, 200])
def test_deep_nesting_is_refused_with_a_pointer_into_the_document(depth: int) -> None:
    errors = checked(nested(depth))
    assert errors if depth == 200 else not errors
    assert {e.code for e in errors} <= {"limit_exceeded"}


def test_a_megabyte_string_anywhere_is_answered() -> None:
    document = {
        "name": MEGABYTE_STRING,
        "description": MEGABYTE_STRING,
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "t", "type": "transform", "config": {"value": MEGABYTE_STRING}},
            {"id": "c", "type": "if", "config": {"condition": MEGABYTE_STRING}},
            {"id": "v", "type": "transform", "config": {"value": "{{ " + MEGABYTE_STRING}},
        ],
        "edges": [{"from": "start", "to": "t"}],
    }
    errors = checked(document)
    assert {e.pointer for e in errors} >= {"/name", "/nodes/2/config/condition"}


def test_a_node_without_config_is_pointed_at_where_config_is_missing() -> None:
    """Bug: a node without ``config`` whose type needs fields was reported at
    ``/nodes/0/config/seconds``, inside a value the document does not hold."""
    document = {"name": "x", "nodes": [{"id": "wait", "type": "delay"}]}
    assert [(e.pointer, e.message) for e in checked(document)] == [
        ("/nodes/0/config", "missing required field 'seconds'")
    ]


def test_the_resolver_follows_rfc_6901() -> None:
    document = {"a/b": {"m~n": [10, 20]}, "": 1}
    assert resolve(document, "") is document
    assert resolve(document, "/a~1b/m~0n/1") == 20
    assert resolve(document, "/") == 1
    for bad in ("a", "/a~1b/m~0n/01", "/a~1b/m~0n/2", "/a~1b/m~0n/-", "/x", "/a~1b/m~0n/0/x"):
        with pytest.raises(Unresolved):
            resolve(document, bad)
    assert points_into(document, "/a~1b/missing", "missing_field")
    with pytest.raises(Unresolved):
        points_into(document, "/a~1b/missing", "invalid_value")
