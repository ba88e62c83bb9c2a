"""Stored Responses API responses: the Response object and the conversation it ended,
so ``previous_response_id`` can continue it. Per owner, like conversations.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "responses",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("history", sa.JSON),
    )
    op.create_index("responses_owner", "responses", ["owner"])
    op.create_index("responses_updated_at", "responses", ["updated_at"])


def downgrade() -> None:
    op.drop_table("responses")
