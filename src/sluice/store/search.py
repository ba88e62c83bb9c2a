"""Full-text search over conversations: which ones mention a phrase (in their title or
any message), and a snippet of the text around the match for each, to show the reader
why it was found. Case-insensitive substring matching (trigram-indexed on PostgreSQL)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.store.schema import conversations, messages

#: Characters of context kept before and after the match in a snippet.
BEFORE = 40
AFTER = 100


def matching(statement: Any, query: str, engine: AsyncEngine) -> Any:
    """``statement`` (a select of conversations) narrowed to those mentioning ``query``."""
    pattern = _pattern(query)
    mentioned = (
        select(messages.c.conversation_id)
        .where(_contains(messages.c.content, pattern, engine))
        .scalar_subquery()
    )
    return statement.where(
        or_(_contains(conversations.c.title, pattern, engine), conversations.c.id.in_(mentioned))
    )


async def snippets(
    engine: AsyncEngine, conversation_ids: Collection[str], query: str
) -> dict[str, str]:
    """For each of ``conversation_ids`` whose messages mention ``query``: the text around
    its latest mention. The ids are the caller's (already owner-scoped) search results."""
    if not conversation_ids or not query:
        return {}
    statement = (
        select(messages.c.conversation_id, messages.c.content)
        .where(
            messages.c.conversation_id.in_(list(conversation_ids)),
            _contains(messages.c.content, _pattern(query), engine),
        )
        .order_by(messages.c.created_at.desc())
    )
    found: dict[str, str] = {}
    async with engine.connect() as connection:
        for conversation_id, content in (await connection.execute(statement)).all():
            if conversation_id not in found:
                found[conversation_id] = snippet(content, query)
    return found


def snippet(text: str, query: str) -> str:
    """The text around the first match of ``query`` (case-insensitive) on one line, with
    "…" where it was cut."""
    at = text.casefold().find(query.casefold())
    if at < 0:
        at = 0
    start = max(0, at - BEFORE)
    end = min(len(text), at + len(query) + AFTER)
    # Whole words at the cut edges where a space is near.
    if start > 0:
        space = text.find(" ", start, at)
        start = space + 1 if space != -1 else start
    if end < len(text):
        space = text.rfind(" ", at + len(query), end)
        end = space if space != -1 else end
    body = " ".join(text[start:end].split())
    return ("…" if start > 0 else "") + body + ("…" if end < len(text) else "")


def _pattern(query: str) -> str:
    return "%" + _escape_like(query) + "%"


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _contains(column: Any, pattern: str, engine: AsyncEngine) -> Any:
    # Case-insensitive substring match; trigram-indexed on PostgreSQL.
    if engine.dialect.name == "postgresql":
        return column.ilike(pattern, escape="\\")
    return func.lower(column).like(pattern.lower(), escape="\\")
