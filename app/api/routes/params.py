"""Parameters several routes share.

Every text parameter refuses U+0000 (Postgres text cannot hold it; the pattern says so in the
OpenAPI document) and every integer is bounded by the column it is compared with.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import AfterValidator

from app.domain.workflow import MAX_VERSION

MAX_LIMIT = 500
MAX_SEQ = 2**31 - 1  # events.seq is a 32-bit column: a larger position is not a position
MAX_ID = 200  # characters of an id in a path or a filter
TEXT = r"^[^\x00]*$"  # any text but U+0000


def _empty_is_none(cursor: str | None) -> str | None:
    return cursor or None


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size (at most 500).")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=1000,
        pattern=TEXT,
        description="`next_cursor` of the previous page; empty or absent: the first page.",
    ),
    AfterValidator(_empty_is_none),
]
SeqCursor = Annotated[
    str | None,
    Query(
        max_length=20,
        pattern=TEXT,
        description="`next_cursor` of the previous page; empty or absent: start after `after`.",
    ),
    AfterValidator(_empty_is_none),
]
IdFilter = Annotated[str | None, Query(max_length=MAX_ID, pattern=TEXT)]
Version = Annotated[
    int | None, Query(ge=1, le=MAX_VERSION, description="A version; the latest by default.")
]
WorkflowId = Annotated[str, Path(max_length=MAX_ID, pattern=TEXT, description="A workflow id.")]
ExecutionId = Annotated[str, Path(max_length=MAX_ID, pattern=TEXT, description="An execution id.")]
KeyId = Annotated[
    str, Path(pattern=r"^[0-9A-Za-z]{12}$", description="An API key id (not the key).")
]
FormId = Annotated[str, Path(max_length=MAX_ID, pattern=TEXT, description="A form id.")]
CredentialId = Annotated[str, Path(max_length=MAX_ID, pattern=TEXT, description="A credential id.")]
