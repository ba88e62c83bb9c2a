"""API keys (hashes only) and the usage log budgets are counted from.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("models", sa.JSON),
        sa.Column("rpm", sa.Integer),
        sa.Column("tpm", sa.Integer),
        sa.Column("max_concurrent", sa.Integer),
        sa.Column("budget_tokens", sa.Integer),
        sa.Column("budget_cost", sa.Float),
        sa.Column("budget_period", sa.String(8)),
        sa.Column("expires_at", sa.Float),
        sa.Column("revoked_at", sa.Float),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "usage",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key_id", sa.String(32)),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("cost", sa.Float),
        sa.Column("estimated", sa.Boolean, nullable=False),
        sa.Column("stream_id", sa.String(64)),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("usage_key_at", "usage", ["key_id", "at"])


def downgrade() -> None:
    op.drop_table("usage")
    op.drop_table("api_keys")
