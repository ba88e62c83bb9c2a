"""The tables, as SQLAlchemy Core metadata for queries. The schema itself is created
and changed only by the migrations in ``store/migrations`` (keep the two in step)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("title", Text, nullable=False),
    Column("system_prompt", Text),
    Column("model", String(200)),
    Column("options", JSON, nullable=False),
    #: The tip of the branch the conversation currently shows.
    Column("leaf_id", String(32)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

messages = Table(
    "messages",
    metadata,
    Column("id", String(32), primary_key=True),
    Column(
        "conversation_id",
        String(32),
        ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    #: Messages form a tree: a regenerated answer or an edited question is a sibling.
    Column("parent_id", String(32)),
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=False),
    Column("model", String(200)),
    #: complete | streaming | incomplete | failed
    Column("status", String(16), nullable=False),
    Column("finish_reason", String(32)),
    Column("prompt_tokens", Integer),
    Column("completion_tokens", Integer),
    Column("usage_estimated", Boolean, nullable=False),
    Column("ttft_ms", Float),
    Column("duration_ms", Float),
    Column("stream_id", String(64)),
    Column("error", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)
