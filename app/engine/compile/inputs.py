"""Run inputs against a workflow's ``inputs`` JSON Schema: the schema itself checked, defaults,
then validation."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator, ValidationError, validators
from jsonschema.exceptions import best_match

from app.engine.compile.validation_errors import join
from app.errors import ErrorDetail

_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def problems(schema: Mapping[str, Any]) -> list[ErrorDetail]:
    """Why a document's ``inputs`` is not a JSON Schema (2020-12 unless its ``$schema`` names
    another), at pointers under ``/inputs``; [] when it is one."""
    declared = schema.get("$schema")
    validator: Any = Draft202012Validator
    if declared is not None:
        known = isinstance(declared, str) and validators.validator_for(schema, default=None)
        if not known:
            message = f"unknown JSON Schema dialect {declared!r} (use {_DIALECT!r})"
            return [ErrorDetail("/inputs/$schema", message, "invalid_schema")]
        validator = known
    found = []
    for problem in validator(validator.META_SCHEMA).iter_errors(schema):
        if problem.context:  # "not valid under any of the given schemas": say which way
            problem = best_match(problem.context)
        where = join("/inputs", *problem.absolute_path)
        found.append(
            ErrorDetail(where, f"not a valid JSON Schema: {problem.message}", "invalid_schema")
        )
    return found


def apply_defaults(schema: dict[str, Any] | None, inputs: Any) -> Any:
    """``inputs`` with the schema's top-level ``properties.*.default`` filled in where absent.

    Only an object gets defaults (anything else is returned as is, for validation to judge); the
    given object is not modified.
    """
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(inputs, dict) or not isinstance(properties, dict):
        return inputs
    filled = dict(inputs)
    for name, spec in properties.items():
        if name not in filled and isinstance(spec, dict) and "default" in spec:
            filled[name] = copy.deepcopy(spec["default"])
    return filled


def validate_inputs(
    schema: dict[str, Any] | None, inputs: Any, *, formats: bool = False
) -> list[ErrorDetail]:
    """Every way ``inputs`` breaks ``schema`` (none when there is no schema), with pointers.

    With ``formats``, ``format`` keywords are checked too (``email``, ``date-time``, ``uri``...),
    as a form's answers must be; run inputs keep JSON Schema's default of annotation only.
    """
    if schema is None:
        return []
    validator = _validator(json.dumps(schema, sort_keys=True), formats)
    return [
        ErrorDetail(
            pointer="/" + "/".join(_escape(str(p)) for p in _path(error)),
            message=error.message,
            code=f"schema_{error.validator}",
        )
        for error in sorted(validator.iter_errors(inputs), key=lambda e: list(e.absolute_path))
    ]


def _path(error: ValidationError) -> list[Any]:
    """Where the error is; a missing required property points at the property itself."""
    path = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [p for p in error.validator_value if p not in error.instance]
        if missing and error.message.startswith(repr(missing[0])):
            path.append(missing[0])
    return path


@lru_cache(maxsize=256)
def _validator(schema_json: str, formats: bool) -> Draft202012Validator:
    checker = Draft202012Validator.FORMAT_CHECKER if formats else None
    return Draft202012Validator(json.loads(schema_json), format_checker=checker)


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")
