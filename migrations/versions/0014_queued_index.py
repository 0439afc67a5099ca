"""partial index of queued runs in queue order, for the claim

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 23:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_QUEUED = sa.text("status = 'queued'")


def upgrade() -> None:
    op.create_index(
        "ix_executions_queued",
        "executions",
        ["queue_seq"],
        unique=False,
        postgresql_where=_QUEUED,
        sqlite_where=_QUEUED,
    )


def downgrade() -> None:
    op.drop_index("ix_executions_queued", table_name="executions")
