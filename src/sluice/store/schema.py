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
    LargeBinary,
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
    #: Who it belongs to (sluice.owners); every read and change checks it.
    Column("owner", String(64), nullable=False),
    Column("title", Text, nullable=False),
    Column("system_prompt", Text),
    Column("model", String(200)),
    Column("options", JSON, nullable=False),
    #: The tip of the branch the conversation currently shows.
    Column("leaf_id", String(32)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    #: Set when the owner pinned it to the top of the sidebar.
    Column("pinned_at", Float),
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
    #: Served from the response cache, not generated for this turn.
    Column("cached", Boolean, nullable=False, default=False),
    Column("error", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    #: Files that came with a question: ``[{"kind", "name", "media_type", "size", ...}]``.
    Column("attachments", JSON),
)

#: Read-only share links: the token itself is shown once; only its hash is kept.
conversation_shares = Table(
    "conversation_shares",
    metadata,
    Column("id", String(32), primary_key=True),
    Column(
        "conversation_id",
        String(32),
        ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("owner", String(64), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    #: sha256 of the key: the key itself is shown once and never stored.
    Column("hash", String(64), nullable=False, unique=True),
    #: The first characters, so people can tell their keys apart.
    Column("prefix", String(16), nullable=False),
    Column("models", JSON),
    Column("rpm", Integer),
    Column("tpm", Integer),
    Column("max_concurrent", Integer),
    Column("budget_tokens", Integer),
    Column("budget_cost", Float),
    Column("budget_period", String(8)),
    Column("expires_at", Float),
    Column("revoked_at", Float),
    Column("created_at", Float, nullable=False),
)

usage = Table(
    "usage",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_id", String(32)),
    Column("owner", String(64), nullable=False),
    Column("model", String(200), nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("cost", Float),
    Column("estimated", Boolean, nullable=False),
    Column("stream_id", String(64)),
    Column("at", Float, nullable=False),
)

#: Decisions the gateway keeps across restarts (``auth_required``).
gateway_state = Table(
    "gateway_state",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

#: Cached answers (the ``database`` cache backend): whole answers by request hash.
response_cache = Table(
    "response_cache",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("model", String(200), nullable=False),
    Column("value", LargeBinary, nullable=False),
    Column("size", Integer, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("stored_at", Float, nullable=False),
)

#: One row per request (the request log): what was asked, by whom, how it went. Never
#: chat text. Kept ``request_log_days``.
request_log = Table(
    "request_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(128), nullable=False),
    Column("at", Float, nullable=False),
    Column("method", String(8), nullable=False),
    Column("route", String(32), nullable=False),
    Column("path", String(200), nullable=False),
    Column("status", Integer, nullable=False),
    Column("model", String(200)),
    Column("served_by", String(200)),
    Column("key_id", String(32)),
    Column("key_name", String(200)),
    Column("owner", String(64)),
    Column("stream_id", String(64)),
    Column("ttft_ms", Float),
    Column("upstream_ttft_ms", Float),
    Column("prompt_tokens", Integer),
    Column("completion_tokens", Integer),
    Column("cost", Float),
    Column("duration_ms", Float, nullable=False),
    Column("retries", Integer),
    Column("cache", String(16)),
    Column("finish_reason", String(32)),
    Column("error", String(64)),
    Column("guardrails", String(200)),
)

#: Responses API responses kept for ``GET``/``previous_response_id``: ``body`` is the
#: Response object (the request's settings while in progress), ``history`` the chat
#: messages of the conversation it ended (None until it finished).
responses = Table(
    "responses",
    metadata,
    Column("id", String(80), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("model", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("body", JSON, nullable=False),
    Column("history", JSON),
)
