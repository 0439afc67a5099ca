"""Parameters several routes share."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

MAX_LIMIT = 500
MAX_SEQ = 2**31 - 1  # events.seq is a 32-bit column: a larger position is not a position

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size (at most 500).")]
Cursor = Annotated[
    str | None,
    Query(max_length=1000, description="`next_cursor` of the previous page."),
]
WorkflowId = Annotated[str, Path(max_length=200, description="A workflow id.")]
ExecutionId = Annotated[str, Path(max_length=200, description="An execution id.")]
