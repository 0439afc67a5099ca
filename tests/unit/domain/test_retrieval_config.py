"""Names the retrieval nodes splice into SQL or a Qdrant URL."""

from __future__ import annotations

import pytest

from app.domain.retrieval_nodes import SERVICE_TABLES, check_collection, check_table
from app.store import tables


def test_the_service_tables_are_all_refused() -> None:
    assert set(tables.metadata.tables) | {"alembic_version"} == SERVICE_TABLES
    for name in SERVICE_TABLES:
        with pytest.raises(ValueError, match="service's own"):
            check_table(name)
    assert check_table("oxify_chunks") == "oxify_chunks"


@pytest.mark.parametrize("name", [".", "..", "...", "", "a/b"])
def test_collections_of_dots_or_slashes_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="collection"):
        check_collection(name)


def test_collections_with_dots_inside_are_kept() -> None:
    assert check_collection("v1.2") == "v1.2"
    assert check_collection(".hidden") == ".hidden"
