"""Rankings without a vector store: BM25 over a collection's texts (``bm25s``) and Reciprocal
Rank Fusion of several rankings.

RRF (Cormack, Clarke & Büttcher, 2009): a chunk's fused score is the sum, over the rankings it
appears in, of ``1 / (k + rank)`` with ranks from 1 and ``k = 60``. Only ranks count, so a
cosine similarity and a BM25 score, which share no scale, fuse without normalising either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import bm25s
import numpy as np

RRF_K = 60
STOPWORDS = "en"


@dataclass(frozen=True, slots=True)
class Hit:
    """A chunk found, with the score of the ranking that found it."""

    id: str
    text: str
    score: float
    metadata: dict[str, Any]

    def as_output(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "score": self.score, "metadata": self.metadata}


def fuse(rankings: Sequence[Sequence[Hit]], k: int = RRF_K) -> list[Hit]:
    """The hits of ``rankings`` (each best first) by fused RRF score, best first.

    Equal scores keep the order in which the chunks were first met (earlier rankings first).
    """
    scores: dict[str, float] = {}
    first: dict[str, Hit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            scores[hit.id] = scores.get(hit.id, 0.0) + 1.0 / (k + rank)
            first.setdefault(hit.id, hit)
    ordered = sorted(first, key=lambda chunk_id: -scores[chunk_id])  # sorted() is stable
    return [replace(first[chunk_id], score=scores[chunk_id]) for chunk_id in ordered]


class KeywordIndex:
    """BM25 over a fixed set of chunks. Building and searching are CPU work: callers run them
    off the event loop (``asyncio.to_thread``) once a collection is not tiny."""

    def __init__(self, chunks: Sequence[Hit]) -> None:
        self._chunks = list(chunks)
        self._bm25 = bm25s.BM25()
        if self._chunks:
            tokens = bm25s.tokenize(
                [c.text for c in self._chunks], stopwords=STOPWORDS, show_progress=False
            )
            self._bm25.index(tokens, show_progress=False)

    def __len__(self) -> int:
        return len(self._chunks)

    def search(self, query: str, top_k: int) -> list[Hit]:
        """The ``top_k`` chunks sharing a term with ``query``, by BM25 score, best first."""
        if not self._chunks:
            return []
        terms = bm25s.tokenize(query, stopwords=STOPWORDS, return_ids=False, show_progress=False)[0]
        if not terms:
            return []
        scores = self._bm25.get_scores(terms)
        count = min(top_k, len(scores))
        best = np.argpartition(-scores, count - 1)[:count]
        best = best[np.lexsort((best, -scores[best]))]  # by score, ties by position
        return [replace(self._chunks[i], score=float(scores[i])) for i in best if scores[i] > 0]
