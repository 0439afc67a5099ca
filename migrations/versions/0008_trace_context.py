"""executions.trace_context and trace_segment: one run, one trace, across replicas

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 18:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("trace_context", sa.String(length=55), nullable=True))
        batch_op.add_column(sa.Column("trace_segment", sa.String(length=55), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_column("trace_segment")
        batch_op.drop_column("trace_context")
