"""The project predicate every API-facing statement on workflows, executions and forms
carries: a caller bound to one project never reads or changes another's rows (it gets 404, as
for a row that does not exist). ``project`` None is the service itself or an admin of every
project: no predicate."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Table, true


def visible(table: Table, project: str | None) -> ColumnElement[bool]:
    """``table.project = project``, or nothing to add when ``project`` is None."""
    if project is None:
        return true()
    column: ColumnElement[Any] = table.c.project
    return column == project
