"""Keeping secrets out of what leaves the process: node errors, log lines.

Two rules: a known secret's text is replaced wherever it appears (a provider may echo the key
it refused; a message may quote a header), and a structured field whose name says it holds a
secret (``authorization``, ``api_key``, ``x-api-key``, ``token``, ``password``, ``secret``…)
never shows its value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

SECRET = "[secret]"
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
