"""Rows ↔ domain objects for events, checkpoints and node records."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import orjson

from app.domain.events import Event, EventType
from app.domain.run import Checkpoint, NodeRecord
from app.domain.status import NodeStatus

_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def dumps(value: Any) -> str:
    """Compact JSON, the same on every backend; values the engine produced are JSON already
    (``str`` is the safety net for anything else).

    NUL characters become U+FFFD: Postgres' jsonb cannot store them, and an HTTP response or a
    model's output holding one must not fail the run.
    """
    text = orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    return _NUL.sub(r"\1\\ufffd", text) if "\\u0000" in text else text


def record_to_json(record: NodeRecord) -> dict[str, Any]:
    return {
        "key": record.key,
        "node_id": record.node_id,
        "status": record.status.value,
        "output": record.output,
        "error": record.error,
        "branch": record.branch,
        "attempt": record.attempt,
        "set_vars": record.set_vars,
        "started_at": _iso(record.started_at),
        "finished_at": _iso(record.finished_at),
        "data": record.data,
        "steps": record.steps,
        "usage": record.usage,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def record_from_json(data: dict[str, Any]) -> NodeRecord:
    return NodeRecord(
        key=data["key"],
        node_id=data["node_id"],
        status=NodeStatus(data["status"]),
        output=data.get("output"),
        error=data.get("error"),
        branch=data.get("branch"),
        attempt=data.get("attempt", 1),
        set_vars=data.get("set_vars"),
        started_at=parse_datetime(data.get("started_at")),
        finished_at=parse_datetime(data.get("finished_at")),
        data=data.get("data"),
        steps=data.get("steps"),
        usage=data.get("usage"),
    )


def checkpoint_from_row(row: Any) -> Checkpoint:
    records = row.records if not isinstance(row.records, str) else json.loads(row.records)
    return Checkpoint(
        execution_id=row.execution_id,
        number=row.number,
        seq=row.seq,
        created_at=row.created_at,
        records=[record_from_json(r) for r in records],
    )


def checkpoint_from_json(execution_id: str, data: dict[str, Any]) -> Checkpoint:
    """A checkpoint as Postgres' ``json_build_object`` wrote it."""
    return Checkpoint(
        execution_id=execution_id,
        number=data["number"],
        seq=data["seq"],
        created_at=datetime.fromisoformat(data["created_at"]),
        records=[record_from_json(r) for r in data["records"]],
    )


def event_from_row(row: Any) -> Event:
    data = row.data if not isinstance(row.data, str) else json.loads(row.data)
    return Event(
        execution_id=row.execution_id,
        seq=row.seq,
        type=EventType(row.type),
        ts=row.ts,
        node_id=row.node_id,
        level=row.level,
        data=data,
    )


def parse_datetime(value: str | None) -> datetime | None:
    """An RFC 3339 timestamp as written by ``isoformat`` (None stays None)."""
    return datetime.fromisoformat(value) if value else None
