"""Chunking, BM25 and Reciprocal Rank Fusion, without a store."""

from __future__ import annotations

import pytest

from app.nodes.retrieval.chunking import chunk_document, windows
from app.nodes.retrieval.ranking import Hit, KeywordIndex, fuse


def hit(chunk_id: str, score: float = 0.0) -> Hit:
    return Hit(chunk_id, f"text of {chunk_id}", score, {})


def test_windows_overlap_and_cover_the_text() -> None:
    text = "abcdefghij"
    assert windows(text, 4, 1) == ["abcd", "defg", "ghij"]
    assert windows(text, 4, 0) == ["abcd", "efgh", "ij"]
    assert windows(text, 20, 5) == [text]
    assert windows("   ", 4, 1) == []
    with pytest.raises(ValueError, match="smaller"):
        windows(text, 4, 4)


def test_chunks_are_numbered_under_their_document() -> None:
    chunks = chunk_document("doc", "abcdefgh", {"k": 1}, 5, 2)
    assert [(c.id, c.text) for c in chunks] == [("doc#0", "abcde"), ("doc#1", "defgh")]
    assert all(c.document_id == "doc" and c.metadata == {"k": 1} for c in chunks)


def test_rrf_worked_example_from_the_readme() -> None:
    by_vector = [hit("A", 0.9), hit("B", 0.8), hit("C", 0.7)]
    by_keyword = [hit("B", 7.1), hit("D", 3.2)]
    fused = fuse([by_vector, by_keyword])
    assert [h.id for h in fused] == ["B", "A", "D", "C"]
    assert [h.score for h in fused] == [
        1 / 62 + 1 / 61,
        1 / 61,
        1 / 62,
        1 / 63,
    ]
    assert fused[0].text == "text of B"


def test_rrf_ties_keep_first_met_order() -> None:
    fused = fuse([[hit("A"), hit("B")], [hit("C"), hit("D")]])
    assert [h.id for h in fused] == ["A", "C", "B", "D"]


def test_bm25_ranks_matching_chunks_only() -> None:
    index = KeywordIndex(
        [
            hit("long", 0),
            Hit("short", "zebra crossing", 0.0, {}),
            Hit("other", "a quiet afternoon", 0.0, {}),
            Hit("long2", "zebra " + " ".join(f"w{i}" for i in range(30)), 0.0, {"n": 2}),
        ]
    )
    found = index.search("the zebra", 10)
    assert [h.id for h in found] == ["short", "long2"]
    assert found[0].score > found[1].score > 0
    assert found[1].metadata == {"n": 2}
    assert index.search("unicorn", 10) == []
    assert index.search("the", 10) == []  # stopwords only
    assert KeywordIndex([]).search("zebra", 3) == []
