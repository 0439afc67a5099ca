"""forms and approvals: requests, answers, wake-ups of waiting runs

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 17:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "forms",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("execution_id", sa.String(length=64), nullable=False),
        sa.Column("workflow_id", sa.String(length=64), nullable=False),
        sa.Column("node_key", sa.String(length=512), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("approvers", sa.JSON(), nullable=True),
        sa.Column("quorum", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("allow_self_approval", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("on_timeout", sa.String(length=16), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("answer", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
            name=op.f("fk_forms_execution_id_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forms")),
    )
    with op.batch_alter_table("forms", schema=None) as batch_op:
        batch_op.create_index("ix_forms_deadline", ["status", "deadline"], unique=False)
        batch_op.create_index("ix_forms_execution", ["execution_id"], unique=False)
        batch_op.create_index("ix_forms_status_created", ["status", "created_at"], unique=False)

    # The table was created empty in 0001 and never written before forms existed.
    with op.batch_alter_table("form_submissions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("form_id", sa.String(length=64), nullable=False))
        batch_op.create_foreign_key(
            batch_op.f("fk_form_submissions_form_id_forms"),
            "forms",
            ["form_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_index("uq_form_submissions_form_by", ["form_id", "by"], unique=True)

    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("pending_answers", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.add_column(
            sa.Column("active_s", sa.Float(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.add_column(sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("executions", schema=None) as batch_op:
        batch_op.drop_column("deadline_at")
        batch_op.drop_column("active_s")
        batch_op.drop_column("pending_answers")
    with op.batch_alter_table("form_submissions", schema=None) as batch_op:
        batch_op.drop_index("uq_form_submissions_form_by")
        batch_op.drop_constraint(
            batch_op.f("fk_form_submissions_form_id_forms"), type_="foreignkey"
        )
        batch_op.drop_column("form_id")
    with op.batch_alter_table("forms", schema=None) as batch_op:
        batch_op.drop_index("ix_forms_status_created")
        batch_op.drop_index("ix_forms_execution")
        batch_op.drop_index("ix_forms_deadline")
    op.drop_table("forms")
