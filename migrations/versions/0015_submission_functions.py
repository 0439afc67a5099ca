"""functions the one-statement run submission calls on Postgres

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08 01:00:00

``oxify_unfinished_runs`` counts a key's or a project's unfinished runs with a snapshot of its
own (VOLATILE PL/pgSQL: each query inside takes a fresh snapshot), so called after the advisory
lock of its scope it sees every run committed before the lock was granted.
``oxify_refuse_run`` raises SQLSTATE OX429 with the quota and scope in its detail: the
submission's statement, charges included, rolls back. SQLite needs neither.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UNFINISHED = """
CREATE FUNCTION oxify_unfinished_runs(scope_column text, scope_value text, statuses text[])
RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF scope_column = 'key_id' THEN
        RETURN (SELECT count(*) FROM run_quotas q JOIN executions e ON e.id = q.execution_id
                WHERE q.key_id = scope_value AND q.active AND e.status = ANY(statuses));
    ELSIF scope_column = 'project' THEN
        RETURN (SELECT count(*) FROM run_quotas q JOIN executions e ON e.id = q.execution_id
                WHERE q.project = scope_value AND q.active AND e.status = ANY(statuses));
    END IF;
    RAISE EXCEPTION 'oxify_unfinished_runs: no scope column %', scope_column;
END $$
"""

_REFUSE = """
CREATE FUNCTION oxify_refuse_run(quota text, scope text) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'run refused: % quota of % reached', quota, scope
        USING ERRCODE = 'OX429', DETAIL = quota || ' ' || scope;
END $$
"""


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute(_UNFINISHED)
    op.execute(_REFUSE)


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION oxify_refuse_run(text, text)")
    op.execute("DROP FUNCTION oxify_unfinished_runs(text, text, text[])")
