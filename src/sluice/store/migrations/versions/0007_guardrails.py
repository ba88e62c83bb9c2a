"""The request log notes which guardrails took effect (``rule:action``, no text).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("request_log") as batch:
        batch.add_column(sa.Column("guardrails", sa.String(200)))


def downgrade() -> None:
    with op.batch_alter_table("request_log") as batch:
        batch.drop_column("guardrails")
