"""The audit log's hash chain: what a row is, how it is encoded, and how the chain is checked.

Each row's hash is SHA-256 over the previous row's hash, the row's id (8 bytes, big-endian)
and the canonical bytes of its fields (:func:`canonical`). Ids are given out one after the
other with the chain's head, so a row edited, removed or inserted behind the log's back breaks
the chain at that row, and rows cut from the end no longer reach the head the database keeps.

Postgres computes the same hash inside the INSERT (``sha256(prev || int8send(id) || body)``,
see :mod:`app.store.audit`), with ``body`` as encoded here: one encoding, two places that
concatenate.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = bytes(32)  # the "previous hash" of the first row
OK = "ok"  # the outcome of an action that was done; refusals say why (``denied``, ...)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One thing done (or refused): who, what, to what, in which project, and how it went.

    ``actor`` is ``key:<id>``, ``sub:<subject>`` or ``anonymous`` (never a key itself);
    ``detail`` is a small JSON object without secrets."""

    at: datetime
    actor: str
    action: str
    target: str
    project: str
    outcome: str
    request_id: str | None = None
    client_ip: str | None = None
    detail: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Filters:
    """What a read of the log keeps: rows equal to each given field, in a time range."""

    actor: str | None = None
    action: str | None = None
    target: str | None = None
    project: str | None = None
    outcome: str | None = None
    since: datetime | None = None  # at or after
    until: datetime | None = None  # before


@dataclass(frozen=True, slots=True)
class ChainedRow:
    """A stored row: its id, its entry and the two hashes stored with it."""

    id: int
    entry: AuditEntry
    prev_hash: bytes
    hash: bytes


def canonical(entry: AuditEntry) -> bytes:
    """The row's fields as bytes that do not depend on how a database returns them: a compact
    JSON array in a fixed order, the time in UTC to the microsecond, object keys sorted."""
    fields = [
        entry.at.astimezone(UTC).isoformat(timespec="microseconds"),
        entry.actor,
        entry.action,
        entry.target,
        entry.project,
        entry.outcome,
        entry.request_id,
        entry.client_ip,
        None if entry.detail is None else dict(entry.detail),
    ]
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev: bytes, row_id: int, entry: AuditEntry) -> bytes:
    """The hash of row ``row_id`` holding ``entry`` after a row whose hash is ``prev``."""
    return hashlib.sha256(prev + row_id.to_bytes(8, "big", signed=True) + canonical(entry)).digest()


class Verifier:
    """Checks rows fed in id order (in as many batches as the caller reads) against the chain.

    ``broken`` is the id of the first row that does not follow from the rows before it (or
    the id where a row is missing); once set, later rows are not looked at."""

    def __init__(self) -> None:
        self.last_id = 0
        self.last_hash = GENESIS
        self.count = 0
        self.broken: int | None = None

    def feed(self, rows: Iterable[ChainedRow]) -> int | None:
        for row in rows:
            if self.broken is not None:
                break
            expected_id = self.last_id + 1
            if row.id != expected_id:
                self.broken = expected_id
            elif row.prev_hash != self.last_hash or row.hash != chain_hash(
                self.last_hash, row.id, row.entry
            ):
                self.broken = row.id
            else:
                self.last_id, self.last_hash = row.id, row.hash
                self.count += 1
        return self.broken

    def finish(self, head_id: int, head_hash: bytes) -> int | None:
        """Compare the last row checked with the head the database keeps: rows cut from the
        end show as the first missing id."""
        if self.broken is None and (head_id, head_hash) != (self.last_id, self.last_hash):
            self.broken = min(head_id, self.last_id) + 1
        return self.broken


def verify(rows: Iterable[ChainedRow]) -> int | None:
    """The id of the first row that breaks the chain, or None when every row follows."""
    return Verifier().feed(rows)
