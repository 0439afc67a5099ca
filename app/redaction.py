"""Keeping secrets out of what leaves the process: node errors, log lines.

Two rules: a known secret's text is replaced wherever it appears (a provider may echo the key
it refused; a message may quote a header), and a structured field whose name says it holds a
secret (``authorization``, ``api_key``, ``x-api-key``, ``token``, ``password``, ``secret``…)
never shows its value.

Known secrets are the settings' (given to the log's formatters at start) and the values of
stored credentials this process resolved for a node (:func:`remember`): the log scrubs both.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

SECRET = "[secret]"
# Shorter values are not remembered: scrubbing "abc" from every log line would hide more than
# it protects, and a secret that short is no secret.
MIN_REMEMBERED_CHARS = 6
MAX_REMEMBERED = 10_000  # values kept, the oldest forgotten first (memory stays bounded)
# A whole word of the key (split on - _ .), so `input_tokens` and `key_id` stay readable.
SECRET_KEY = re.compile(
    r"(?:^|[-_.])(?:authorization|token|password|passwd|secret|cookie|credentials?|api[-_]?key)"
    r"(?:$|[-_.])",
    re.IGNORECASE,
)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced (a provider may echo the key it refused)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, SECRET)
    return text


def redact(value: object, secrets: Sequence[str]) -> object:
    """``value`` (JSON-like data) with secret-named fields hidden and known secrets scrubbed
    from every string, at any depth."""
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, Mapping):
        return {
            key: SECRET
            if isinstance(key, str) and SECRET_KEY.search(key)
            else redact(item, secrets)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item, secrets) for item in value]
    return value


def scrub_all(value: Any, secrets: Sequence[str]) -> Any:
    """``value`` (JSON-like data) with every secret scrubbed from every string (keys and
    values), at any depth; field names are left as they are (an output keeps its shape)."""
    if not secrets:
        return value
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, Mapping):
        return {scrub_all(key, secrets): scrub_all(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_all(item, secrets) for item in value]
    return value


_remembered: dict[str, None] = {}  # insertion-ordered: the oldest is forgotten first
_lock = threading.Lock()  # the log's formatting thread reads what the event loop adds


def remember(*values: str) -> None:
    """Scrub ``values`` from this process's log lines from now on (a stored credential's
    value, once resolved for a node)."""
    with _lock:
        for value in values:
            if len(value) < MIN_REMEMBERED_CHARS:
                continue
            _remembered.pop(value, None)
            _remembered[value] = None
        while len(_remembered) > MAX_REMEMBERED:
            del _remembered[next(iter(_remembered))]


def remembered() -> list[str]:
    """The values :func:`remember` was given (the most recent :data:`MAX_REMEMBERED`)."""
    with _lock:
        return list(_remembered)
