"""project on workflows, executions and forms: every row belongs to one project

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 22:05:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = {
    "workflows": ("ix_workflows_project_created", ["project", "created_at", "id"]),
    "executions": ("ix_executions_project", ["project", "queue_seq"]),
    "forms": ("ix_forms_project_created", ["project", "created_at"]),
}


def upgrade() -> None:
    # A constant default: Postgres (11+) adds the column without rewriting the table.
    for table, (index, columns) in _INDEXES.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("project", sa.String(length=64), server_default="default", nullable=False)
            )
        op.create_index(index, table, columns, unique=False)


def downgrade() -> None:
    for table, (index, _columns) in _INDEXES.items():
        op.drop_index(index, table_name=table)
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("project")
