"""Owners: every conversation and usage record belongs to a principal; whether the
gateway requires authentication becomes a stored decision.

Existing rows get an owner: ``anonymous`` when the gateway never had a key (everything
was the open gateway's), else ``admin`` (nobody's key can be told from the rows, so
only the master key keeps seeing them).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    had_keys = bool(connection.execute(sa.text("SELECT COUNT(*) FROM api_keys")).scalar())
    active = bool(
        connection.execute(
            sa.text("SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL")
        ).scalar()
    )
    default = "admin" if had_keys else "anonymous"
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("owner", sa.String(64), nullable=False, server_default=default))
    with op.batch_alter_table("usage") as batch:
        batch.add_column(sa.Column("owner", sa.String(64), nullable=False, server_default=default))
    connection.execute(
        sa.text("UPDATE usage SET owner = 'key:' || key_id WHERE key_id IS NOT NULL")
    )
    op.create_index("conversations_owner_updated", "conversations", ["owner", "updated_at"])
    op.create_table(
        "gateway_state",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    # The gateway was closed while it had an active key: it stays closed.
    if active:
        connection.execute(
            sa.text(
                "INSERT INTO gateway_state (name, value, updated_at) "
                "VALUES ('auth_required', 'true', 0)"
            )
        )


def downgrade() -> None:
    op.drop_table("gateway_state")
    op.drop_index("conversations_owner_updated", "conversations")
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("owner")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("owner")
