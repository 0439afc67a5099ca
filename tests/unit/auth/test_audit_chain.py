"""The audit chain, pure: rows that follow verify; any edit, removal or cut is found, at the
row where it happened."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from app.auth import audit
from app.auth.audit import GENESIS, AuditEntry, ChainedRow, Verifier

T0 = datetime(2026, 12, 7, 21, 0, 0, 123456, tzinfo=UTC)


def entry(n: int) -> AuditEntry:
    return AuditEntry(
        at=T0 + timedelta(seconds=n),
        actor=f"key:{n:012d}",
        action="run.start",
        target=f"run-{n}",
        project="default",
        outcome="ok",
        request_id=f"req-{n}",
        client_ip="127.0.0.1",
        detail={"workflow_id": "w", "version": n},
    )


def chained(entries: list[AuditEntry]) -> list[ChainedRow]:
    rows, prev = [], GENESIS
    for row_id, item in enumerate(entries, start=1):
        digest = audit.chain_hash(prev, row_id, item)
        rows.append(ChainedRow(row_id, item, prev, digest))
        prev = digest
    return rows


def test_rows_that_follow_the_chain_verify() -> None:
    assert audit.verify(chained([entry(n) for n in range(20)])) is None
    assert audit.verify([]) is None


def test_the_encoding_does_not_depend_on_key_order_or_the_time_zone_it_is_read_in() -> None:
    first = entry(1)
    reordered = dataclasses.replace(first, detail={"version": 1, "workflow_id": "w"})
    elsewhere = dataclasses.replace(first, at=first.at.astimezone(timezone(timedelta(hours=2))))
    assert audit.canonical(first) == audit.canonical(reordered) == audit.canonical(elsewhere)


def test_the_hash_covers_the_previous_hash_and_the_row_id() -> None:
    item = entry(1)
    digest = audit.chain_hash(GENESIS, 1, item)
    assert digest != audit.chain_hash(b"\x01" * 32, 1, item)
    assert digest != audit.chain_hash(GENESIS, 2, item)
    assert len(digest) == 32


FIELDS = ["at", "actor", "action", "target", "project", "outcome", "request_id", "client_ip"]


@given(
    size=st.integers(1, 12),
    data=st.data(),
)
def test_an_edited_field_breaks_the_chain_at_that_row(size: int, data: st.DataObject) -> None:
    rows = chained([entry(n) for n in range(size)])
    index = data.draw(st.integers(0, size - 1))
    field = data.draw(st.sampled_from([*FIELDS, "detail"]))
    original = rows[index].entry
    if field == "at":
        changed = dataclasses.replace(original, at=original.at + timedelta(microseconds=1))
    elif field == "detail":
        changed = dataclasses.replace(original, detail={"workflow_id": "w", "version": -1})
    else:
        edited: dict[str, Any] = {field: str(getattr(original, field)) + "x"}
        changed = dataclasses.replace(original, **edited)
    rows[index] = dataclasses.replace(rows[index], entry=changed)
    assert audit.verify(rows) == index + 1


def test_a_rehashed_edit_still_breaks_the_next_row() -> None:
    rows = chained([entry(n) for n in range(5)])
    forged = dataclasses.replace(rows[2].entry, outcome="denied")
    rows[2] = ChainedRow(
        3, forged, rows[2].prev_hash, audit.chain_hash(rows[2].prev_hash, 3, forged)
    )
    assert audit.verify(rows) == 4


def test_a_removed_row_breaks_the_chain_where_it_was() -> None:
    rows = chained([entry(n) for n in range(5)])
    del rows[1]
    assert audit.verify(rows) == 2


def test_batches_verify_like_one_pass_and_the_head_finds_a_cut_tail() -> None:
    rows = chained([entry(n) for n in range(10)])
    verifier = Verifier()
    for start in range(0, 10, 3):
        assert verifier.feed(rows[start : start + 3]) is None
    assert verifier.count == 10
    assert verifier.finish(10, rows[-1].hash) is None

    cut = Verifier()
    cut.feed(rows[:7])
    assert cut.finish(10, rows[-1].hash) == 8
