"""The request log: one row per request (no chat text), kept for a configured number of
days.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "request_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("route", sa.String(32), nullable=False),
        sa.Column("path", sa.String(200), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("model", sa.String(200)),
        sa.Column("served_by", sa.String(200)),
        sa.Column("key_id", sa.String(32)),
        sa.Column("key_name", sa.String(200)),
        sa.Column("owner", sa.String(64)),
        sa.Column("stream_id", sa.String(64)),
        sa.Column("ttft_ms", sa.Float),
        sa.Column("upstream_ttft_ms", sa.Float),
        sa.Column("prompt_tokens", sa.Integer),
        sa.Column("completion_tokens", sa.Integer),
        sa.Column("cost", sa.Float),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("retries", sa.Integer),
        sa.Column("cache", sa.String(16)),
        sa.Column("finish_reason", sa.String(32)),
        sa.Column("error", sa.String(64)),
    )
    op.create_index("request_log_at", "request_log", ["at"])
    op.create_index("request_log_request_id", "request_log", ["request_id"])


def downgrade() -> None:
    op.drop_table("request_log")
