"""api_keys and stream_tickets: scoped API keys stored as HMAC digests; single-use stream tickets

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 21:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=12), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("scopes", _JSON, nullable=False),
        sa.Column("project", sa.String(length=64), nullable=True),
        sa.Column("limits", _JSON, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replaced_by", sa.String(length=12), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
    )
    op.create_index("ix_api_keys_created", "api_keys", ["created_at", "id"], unique=False)
    op.create_table(
        "stream_tickets",
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("execution_id", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=12), nullable=True),
        sa.Column("subject", sa.String(length=200), nullable=True),
        sa.Column("scopes", _JSON, nullable=False),
        sa.Column("project", sa.String(length=64), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_stream_tickets")),
    )
    op.create_index("ix_stream_tickets_expires", "stream_tickets", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_stream_tickets_expires", table_name="stream_tickets")
    op.drop_table("stream_tickets")
    op.drop_index("ix_api_keys_created", table_name="api_keys")
    op.drop_table("api_keys")
