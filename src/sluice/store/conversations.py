"""Conversations and their messages, in SQLite or PostgreSQL (SQLAlchemy async Core).

Messages form a tree: regenerating an answer or editing a question adds a sibling
instead of overwriting, and the conversation's ``leaf_id`` says which branch it shows.
``path`` walks from that leaf to the root; ``siblings`` lists the kept versions.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, Protocol, TypeVar

from sqlalchemy import Table, delete, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.errors import NotFound
from sluice.store import search
from sluice.store.records import ANY, STATUSES, Conversation, Message, Owners, new_id
from sluice.store.schema import conversations, messages

__all__ = [
    "ANY",
    "STATUSES",
    "Conversation",
    "ConversationStore",
    "Message",
    "Owners",
    "SQLStore",
    "new_id",
]


class ConversationStore(Protocol):
    async def create_conversation(
        self,
        *,
        owner: str,
        title: str = "",
        system_prompt: str | None = None,
        model: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> Conversation: ...

    async def conversation(self, conversation_id: str, owners: Owners = ANY) -> Conversation: ...

    async def conversations(
        self,
        *,
        owners: Owners = ANY,
        query: str | None = None,
        limit: int = 50,
        offset: int = 0,
        pinned_first: bool = True,
    ) -> list[Conversation]: ...

    async def snippets(self, conversation_ids: Collection[str], query: str) -> dict[str, str]:
        """The text around ``query`` in each of these conversations that mention it."""
        ...

    async def update_conversation(
        self, conversation_id: str, owners: Owners = ANY, **changes: Any
    ) -> Conversation: ...

    async def delete_conversation(self, conversation_id: str, owners: Owners = ANY) -> None: ...

    async def add_message(self, message: Message) -> Message: ...

    async def update_message(self, message_id: str, **changes: Any) -> Message: ...

    async def message(self, message_id: str) -> Message: ...

    async def tree(self, conversation_id: str) -> list[Message]: ...

    async def path(self, conversation_id: str, leaf_id: str | None = None) -> list[Message]: ...

    async def siblings(self, message_id: str) -> list[Message]: ...

    async def recover_interrupted(
        self,
        older_than: float = 10.0,
        *,
        dead: Callable[[list[tuple[str, str | None, float]]], Awaitable[Collection[str]]]
        | None = None,
    ) -> int: ...

    async def ping(self) -> None: ...

    async def aclose(self) -> None: ...


_CONVERSATION_FIELDS = {"title", "system_prompt", "model", "options", "leaf_id", "pinned_at"}
_MESSAGE_FIELDS = {
    "content",
    "model",
    "status",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "usage_estimated",
    "ttft_ms",
    "duration_ms",
    "stream_id",
    "cached",
    "error",
}


class SQLStore:
    """The ConversationStore on any SQLAlchemy async engine (SQLite, PostgreSQL)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create_conversation(
        self,
        *,
        owner: str,
        title: str = "",
        system_prompt: str | None = None,
        model: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> Conversation:
        now = time.time()
        row: dict[str, Any] = {
            "id": new_id(),
            "owner": owner,
            "title": title,
            "system_prompt": system_prompt,
            "model": model,
            "options": options or {},
            "leaf_id": None,
            "created_at": now,
            "updated_at": now,
        }
        async with self.engine.begin() as connection:
            await connection.execute(insert(conversations).values(**row))
        return Conversation(**row)

    async def conversation(self, conversation_id: str, owners: Owners = ANY) -> Conversation:
        statement = _owned(select(conversations), owners).where(
            conversations.c.id == conversation_id
        )
        async with self.engine.connect() as connection:
            row = (await connection.execute(statement)).first()
        if row is None:
            raise NotFound(f"No conversation with id {conversation_id!r}.", param="id")
        return Conversation(**row._mapping)

    async def conversations(
        self,
        *,
        owners: Owners = ANY,
        query: str | None = None,
        limit: int = 50,
        offset: int = 0,
        pinned_first: bool = True,
    ) -> list[Conversation]:
        statement = _owned(select(conversations), owners)
        if query:
            statement = search.matching(statement, query, self.engine)
        # Pinned first (the newest pin first), then the most recently active; or only the
        # latter ("the latest conversation", as the terminal means it).
        order = [conversations.c.updated_at.desc()]
        if pinned_first:
            order.insert(0, conversations.c.pinned_at.desc().nulls_last())
        statement = statement.order_by(*order).limit(limit).offset(offset)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(statement)).all()
        return [Conversation(**row._mapping) for row in rows]

    async def snippets(self, conversation_ids: Collection[str], query: str) -> dict[str, str]:
        return await search.snippets(self.engine, conversation_ids, query)

    async def update_conversation(
        self, conversation_id: str, owners: Owners = ANY, **changes: Any
    ) -> Conversation:
        if owners is not ANY:
            await self.conversation(conversation_id, owners)
        await self._update(conversations, _CONVERSATION_FIELDS, conversation_id, changes, "id")
        return await self.conversation(conversation_id)

    async def delete_conversation(self, conversation_id: str, owners: Owners = ANY) -> None:
        async with self.engine.begin() as connection:
            # Checked and deleted in one transaction: nothing of another owner's goes.
            found = await connection.execute(
                _owned(select(conversations.c.id), owners).where(
                    conversations.c.id == conversation_id
                )
            )
            if found.first() is None:
                raise NotFound(f"No conversation with id {conversation_id!r}.", param="id")
            await connection.execute(
                delete(messages).where(messages.c.conversation_id == conversation_id)
            )
            await connection.execute(
                delete(conversations).where(conversations.c.id == conversation_id)
            )

    async def add_message(self, message: Message) -> Message:
        """Store ``message`` and make it the conversation's current leaf."""
        now = time.time()
        row = {
            **{f: getattr(message, f) for f in Message.__dataclass_fields__},
            "id": message.id or new_id(),
            "created_at": now,
            "updated_at": now,
        }
        async with self.engine.begin() as connection:
            found = await connection.execute(
                update(conversations)
                .where(conversations.c.id == message.conversation_id)
                .values(leaf_id=row["id"], updated_at=now)
            )
            if found.rowcount == 0:
                raise NotFound(
                    f"No conversation with id {message.conversation_id!r}.",
                    param="conversation_id",
                )
            await connection.execute(insert(messages).values(**row))
        return Message(**row)

    async def update_message(self, message_id: str, **changes: Any) -> Message:
        for name in ("content", "error"):
            if isinstance(changes.get(name), str):
                # An answer is the model's text, not the client's: a NUL from an
                # upstream (which PostgreSQL cannot store) must not lose the answer.
                changes[name] = _storable(changes[name])
        await self._update(messages, _MESSAGE_FIELDS, message_id, changes, "message_id")
        return await self.message(message_id)

    async def _update(
        self, table: Table, allowed: set[str], row_id: str, changes: dict[str, Any], param: str
    ) -> None:
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"not {table.name} fields: {sorted(unknown)}")
        # Pinning is not activity: it does not move a conversation to "Today".
        stamp = {} if set(changes) == {"pinned_at"} else {"updated_at": time.time()}
        async with self.engine.begin() as connection:
            result = await connection.execute(
                update(table).where(table.c.id == row_id).values(**changes, **stamp)
            )
        if result.rowcount == 0:
            noun = "conversation" if table is conversations else "message"
            raise NotFound(f"No {noun} with id {row_id!r}.", param=param)

    async def message(self, message_id: str) -> Message:
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(select(messages).where(messages.c.id == message_id))
            ).first()
        if row is None:
            raise NotFound(f"No message with id {message_id!r}.", param="message_id")
        return Message(**row._mapping)

    async def tree(self, conversation_id: str) -> list[Message]:
        """Every message of the conversation, every branch, oldest first."""
        async with self.engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(messages)
                    .where(messages.c.conversation_id == conversation_id)
                    .order_by(messages.c.created_at, messages.c.id)
                )
            ).all()
        return [Message(**row._mapping) for row in rows]

    async def path(self, conversation_id: str, leaf_id: str | None = None) -> list[Message]:
        """The messages from the root to ``leaf_id`` (default: the current leaf)."""
        conversation = await self.conversation(conversation_id)
        leaf = leaf_id or conversation.leaf_id
        if leaf is None:
            return []
        return branch(await self.tree(conversation_id), leaf)

    async def siblings(self, message_id: str) -> list[Message]:
        """Every version of the message at this place in the tree, oldest first."""
        target = await self.message(message_id)
        parent = (
            messages.c.parent_id.is_(None)
            if target.parent_id is None
            else messages.c.parent_id == target.parent_id
        )
        async with self.engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(messages)
                    .where(messages.c.conversation_id == target.conversation_id)
                    .where(parent)
                    .where(messages.c.role == target.role)
                    .order_by(messages.c.created_at, messages.c.id)
                )
            ).all()
        return [Message(**row._mapping) for row in rows]

    async def recover_interrupted(
        self,
        older_than: float = 10.0,
        *,
        dead: Callable[[list[tuple[str, str | None, float]]], Awaitable[Collection[str]]]
        | None = None,
    ) -> int:
        """Answers left ``streaming`` by a process that died: mark them ``incomplete``
        with the finish reason ``interrupted`` — not a reader's Stop — (their text was
        saved up to the last second). Only ones not touched for
        ``older_than`` seconds, so another live instance's answers are left alone; with
        ``dead``, only those it picks from (message id, stream id, last touched) of
        those (at most 500, oldest first) — an answer touched or finished meanwhile is
        kept all the same."""
        cutoff = time.time() - older_than
        stale = (messages.c.status == "streaming", messages.c.updated_at < cutoff)
        chosen: list[str] | None = None
        if dead is not None:
            async with self.engine.connect() as connection:
                rows = (
                    await connection.execute(
                        select(messages.c.id, messages.c.stream_id, messages.c.updated_at)
                        .where(*stale)
                        .order_by(messages.c.updated_at)
                        .limit(500)
                    )
                ).all()
            if not rows:
                return 0
            chosen = list(await dead([(row[0], row[1], row[2]) for row in rows]))
            if not chosen:
                return 0
        statement = update(messages).where(*stale)
        if chosen is not None:
            statement = statement.where(messages.c.id.in_(chosen))
        async with self.engine.begin() as connection:
            result = await connection.execute(
                statement.values(status="incomplete", finish_reason="interrupted")
            )
        return int(result.rowcount)

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def aclose(self) -> None:
        await self.engine.dispose()


def _storable(text: str) -> str:
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text.encode("utf-8", "replace").decode("utf-8")


def _owned(statement: Any, owners: Owners) -> Any:
    if owners is None:  # ANY
        return statement
    return statement.where(conversations.c.owner.in_(owners))


class _Node(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def parent_id(self) -> str | None: ...


_N = TypeVar("_N", bound=_Node)


def branch(tree: Sequence[_N], leaf: str | None) -> list[_N]:
    """The messages of ``tree`` from the root to ``leaf``: a read that has the tree
    already need not load it again (its questions may carry megabytes of files). A
    parent loop in stored data ends the walk instead of hanging it."""
    by_id = {m.id: m for m in tree}
    chain: list[_N] = []
    seen: set[str] = set()
    current = by_id.get(leaf) if leaf else None
    while current is not None and current.id not in seen:
        seen.add(current.id)
        chain.append(current)
        current = by_id.get(current.parent_id) if current.parent_id else None
    chain.reverse()
    return chain
