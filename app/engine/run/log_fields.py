"""What a log line is about: the run, the node and the attempt being driven.

The engine binds them in a context variable where it drives a run and where a node's attempt
runs; the service's log handler reads them into every line logged meanwhile (from the node's
own code too). The engine formats and ships nothing: stdlib only, and one ``set`` per attempt.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from types import MappingProxyType

Fields = Mapping[str, object]

_fields: ContextVar[Fields] = ContextVar("oxify_log_fields", default=MappingProxyType({}))


def current() -> Fields:
    """The fields bound in this context (never mutated: a bind makes a new mapping)."""
    return _fields.get()


def bind(**fields: object) -> Token[Fields]:
    """Add ``fields`` to this context's until :func:`unbind` with the returned token; tasks
    started meanwhile inherit them."""
    return _fields.set({**_fields.get(), **fields})


def unbind(token: Token[Fields]) -> None:
    """Restore the fields as they were before the :func:`bind` that returned ``token``."""
    _fields.reset(token)


@contextmanager
def bound(**fields: object) -> Iterator[None]:
    """:func:`bind` for the duration of a ``with`` block."""
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)
