"""The chat experience: pinned conversations, read-only share links, and attachments
stored with the question that carried them.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("pinned_at", sa.Float))
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("attachments", sa.JSON))
    op.create_table(
        "conversation_shares",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column(
            "conversation_id",
            sa.String(32),
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float),
    )
    op.create_index(
        "ix_conversation_shares_conversation", "conversation_shares", ["conversation_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_conversation_shares_conversation", "conversation_shares")
    op.drop_table("conversation_shares")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("attachments")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("pinned_at")
