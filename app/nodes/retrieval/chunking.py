"""Documents into chunks: windows of ``size`` characters, each starting ``size - overlap``
after the last, so text cut at one window's end is whole at the next one's start."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Chunk:
    """One indexed piece of a document; ``id`` is ``"<document id>#<n>"`` (n from 0)."""

    id: str
    document_id: str
    text: str
    metadata: dict[str, Any]


def windows(text: str, size: int, overlap: int) -> list[str]:
    """``text`` as overlapping windows; none for blank text, one for text up to ``size``."""
    if overlap >= size:
        raise ValueError("chunk_overlap must be smaller than chunk_size")
    if not text.strip():
        return []
    step = size - overlap
    pieces: list[str] = []
    for start in range(0, len(text), step):
        pieces.append(text[start : start + size])
        if start + size >= len(text):
            break
    return pieces


def chunk_document(
    document_id: str, text: str, metadata: dict[str, Any], size: int, overlap: int
) -> list[Chunk]:
    """The chunks of one document, numbered in order."""
    return [
        Chunk(f"{document_id}#{n}", document_id, piece, metadata)
        for n, piece in enumerate(windows(text, size, overlap))
    ]
