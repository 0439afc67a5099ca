"""project_limits, quota_usage, run_quotas: rate limits and exact daily quotas per key and project

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 22:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_ACTIVE = sa.text("active")
_PAUSED = sa.text("paused_on IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "project_limits",
        sa.Column("project", sa.String(length=64), nullable=False),
        sa.Column("limits", _JSON, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("project", name=op.f("pk_project_limits")),
    )
    op.create_table(
        "quota_usage",
        sa.Column("scope", sa.String(length=80), nullable=False),
        sa.Column("quota", sa.String(length=16), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "quota", "day", name=op.f("pk_quota_usage")),
    )
    op.create_table(
        "run_quotas",
        sa.Column("execution_id", sa.String(length=64), nullable=False),
        sa.Column("project", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=12), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("paused_on", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("execution_id", name=op.f("pk_run_quotas")),
    )
    op.create_index(
        "ix_run_quotas_project",
        "run_quotas",
        ["project"],
        postgresql_where=_ACTIVE,
        sqlite_where=_ACTIVE,
    )
    op.create_index(
        "ix_run_quotas_key",
        "run_quotas",
        ["key_id"],
        postgresql_where=_ACTIVE,
        sqlite_where=_ACTIVE,
    )
    op.create_index(
        "ix_run_quotas_paused_on",
        "run_quotas",
        ["paused_on"],
        postgresql_where=_PAUSED,
        sqlite_where=_PAUSED,
    )


def downgrade() -> None:
    op.drop_index("ix_run_quotas_paused_on", table_name="run_quotas")
    op.drop_index("ix_run_quotas_key", table_name="run_quotas")
    op.drop_index("ix_run_quotas_project", table_name="run_quotas")
    op.drop_table("run_quotas")
    op.drop_table("quota_usage")
    op.drop_table("project_limits")
