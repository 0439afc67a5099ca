"""partial index for the sweep of waiting runs past their deadline

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WAITING_WITH_DEADLINE = "status = 'waiting' AND deadline_at IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_executions_waiting_deadline",
            ["deadline_at"],
            unique=False,
            postgresql_where=sa.text(_WAITING_WITH_DEADLINE),
            sqlite_where=sa.text(_WAITING_WITH_DEADLINE),
        )


def downgrade() -> None:
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_index("ix_executions_waiting_deadline")
