"""The response cache's table (the ``database`` backend), and a mark on answers that
were served from it.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "response_cache",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("stored_at", sa.Float, nullable=False),
    )
    op.create_index("response_cache_expires", "response_cache", ["expires_at"])
    op.create_index("response_cache_model", "response_cache", ["model"])
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("cached", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("cached")
    op.drop_table("response_cache")
