"""JSON request bodies as the API reads them: strict JSON that the store and a run can hold.

FastAPI reads bodies with ``json.loads``, which takes what JSON or the store cannot carry:
``NaN``, ``Infinity`` and ``1e999`` (stored later as ``null``), integers of any size (the store's
encoder, orjson, holds 64 bits), U+0000 and lone surrogates (Postgres text and UTF-8 refuse
them), invalid UTF-8 (a 400), and nesting deep enough to exhaust a recursion limit later, in
the store or in a run. :class:`JsonRoute` reads every JSON body with :func:`parse` first, which
refuses all of these with one 422 naming each bad value by its pointer; so whatever a body
carries was checked once, at the edge, for run inputs, documents and form values alike.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Coroutine
from typing import Any

import anyio.to_thread
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

MAX_DEPTH = 64  # levels of objects and arrays a body may nest, the body itself the first
INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # the integers orjson holds (int64 and uint64)
MAX_PROBLEMS = 20  # a body with more bad values is reported by its first ones
OFF_LOOP_BYTES = 256 * 1024  # bodies larger than this are parsed in a worker thread

_INT_DIGITS = len(str(INT_MIN))  # no integer written with more characters fits
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # U+0000 (Postgres text), lone surrogates
_UNSTORABLE_MESSAGE = "strings may not hold U+0000 or unpaired surrogates"
RULES = (
    f"JSON bodies are UTF-8 with finite numbers, integers from {INT_MIN} to {INT_MAX}, no "
    f"U+0000 or unpaired surrogates in strings, and at most {MAX_DEPTH} levels of nesting."
)


class _Unfit:
    """A number JSON text can write but no JSON value can hold; reported by its pointer."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def _integer(text: str) -> int | _Unfit:
    if len(text) <= _INT_DIGITS:  # long digit strings are refused before int() reads them
        value = int(text)
        if INT_MIN <= value <= INT_MAX:
            return value
    shown = text if len(text) <= 40 else f"{text[:20]}…({len(text)} digits)"
    return _Unfit(f"integer {shown} is outside {INT_MIN}..{INT_MAX}")


def _number(text: str) -> float | _Unfit:
    value = float(text)
    return value if math.isfinite(value) else _Unfit(f"number {text[:40]} is not finite")


def _constant(text: str) -> _Unfit:
    return _Unfit(f"{text} is not a JSON number")


def parse(body: bytes) -> Any:
    """The JSON value of ``body``; raises RequestValidationError listing every value (up to
    MAX_PROBLEMS) that breaks the rules, each with its location in the body."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _syntax_error("not UTF-8", exc.start) from None
    try:
        value = json.loads(text, parse_int=_integer, parse_float=_number, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise _syntax_error(exc.msg, exc.pos) from None
    except RecursionError:
        raise RequestValidationError([_error("json_too_deep", (), _too_deep())]) from None
    problems = list(_problems(value))
    if problems:
        raise RequestValidationError(problems)
    return value


def _problems(value: Any) -> Any:
    """Every value breaking the rules, as pydantic-style error dicts (depth-first, iterative:
    the body is already known to nest less than the recursion limit, but only just)."""
    found = 0
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack and found < MAX_PROBLEMS:
        item, path = stack.pop()
        problem = _problem(item, path)
        if problem is not None:
            found += 1
            yield problem
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):  # reversed: popped in document order
                if _UNSTORABLE.search(key):
                    found += 1
                    yield _error("json_unstorable_string", (*path, key), _UNSTORABLE_MESSAGE)
                stack.append((child, (*path, key)))
        elif isinstance(item, list):
            stack.extend((item[i], (*path, i)) for i in reversed(range(len(item))))


def _problem(item: Any, path: tuple[str | int, ...]) -> dict[str, Any] | None:
    if isinstance(item, str):
        if _UNSTORABLE.search(item):
            return _error("json_unstorable_string", path, _UNSTORABLE_MESSAGE)
    elif isinstance(item, _Unfit):
        return _error("json_number_unfit", path, item.message)
    elif isinstance(item, dict | list) and len(path) >= MAX_DEPTH:
        return _error("json_too_deep", path, _too_deep())
    return None


def _too_deep() -> str:
    return f"nested deeper than {MAX_DEPTH} levels"


def _error(kind: str, path: tuple[str | int, ...], message: str) -> dict[str, Any]:
    return {"type": kind, "loc": ("body", *path), "msg": message, "input": None}


def _syntax_error(message: str, offset: int) -> RequestValidationError:
    """FastAPI's own shape for a body that is not JSON (the error handlers know it)."""
    error = {
        "type": "json_invalid",
        "loc": ("body", offset),
        "msg": "JSON decode error",
        "input": {},
        "ctx": {"error": message},
    }
    return RequestValidationError([error])


def is_json(content_type: str | None) -> bool:
    """Whether FastAPI reads a body of ``content_type`` as JSON (``application/json`` or
    ``application/*+json``; without a content type it does not)."""
    if not content_type:
        return False
    media = content_type.partition(";")[0].strip().lower()
    maintype, _, subtype = media.partition("/")
    return maintype == "application" and (subtype == "json" or subtype.endswith("+json"))


class StrictJsonRequest(Request):
    """A request whose ``json()`` is :func:`parse`d, off the event loop when large."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            if len(body) > OFF_LOOP_BYTES:
                self._json = await anyio.to_thread.run_sync(parse, body)
            else:
                self._json = parse(body)
        return self._json


class JsonRoute(APIRoute):
    """A route that reads its JSON body with :func:`parse` before FastAPI does: its errors
    then reach the exception handlers as they are (inside FastAPI's own read, any exception
    but a JSON syntax error becomes a bare 400)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def read_strictly(request: Request) -> Response:
            request = StrictJsonRequest(request.scope, request.receive)
            if is_json(request.headers.get("content-type")) and await request.body():
                await request.json()
            return await handler(request)

        return read_strictly
