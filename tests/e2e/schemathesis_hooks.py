"""Loaded by schemathesis (``hooks`` in schemathesis.toml) before it generates anything.

Its workers are threads, and Hypothesis describes the lambdas in the workflow schema's recursive
strategies with ``ast.parse``. Before Python 3.11.8, two threads building ASTs at once share one
recursion counter (python/cpython#106905) and fail with "SystemError: AST constructor recursion
depth mismatch"; parsing one at a time avoids it.
"""

from __future__ import annotations

import ast
import functools
import sys
import threading
from typing import Any

if sys.version_info < (3, 11, 8):
    _parse_lock = threading.RLock()
    _parse = ast.parse

    @functools.wraps(_parse)
    def _parse_alone(*args: Any, **kwargs: Any) -> Any:
        with _parse_lock:
            return _parse(*args, **kwargs)

    ast.parse = _parse_alone
