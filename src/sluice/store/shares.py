"""Read-only share links to conversations, in the same database (SQLAlchemy async Core).

A link is a random token shown once, when it is made; only its sha256 is stored (as API
keys are, ``store/keys.py``), so a copy of the database opens no conversation. Anyone
holding a live token reads the conversation's current branch — its questions and answers,
never its owner, system prompt, keys, streams or errors. Revoking sets ``revoked_at``;
deleting the conversation deletes its links (the foreign key cascades).
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, exists, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sluice.errors import NotFound, RequestError
from sluice.owners import KEY_PREFIX
from sluice.store.conversations import Owners, branch, new_id
from sluice.store.keys import hash_key
from sluice.store.schema import api_keys, conversation_shares, conversations, messages

#: Live (unrevoked) links one conversation may have at once.
MAX_LIVE_SHARES = 20
#: Revoked links kept per conversation for its owner's list; older ones are deleted.
KEEP_REVOKED = 20
#: ``secrets.token_urlsafe(24)`` gives 32 characters; anything longer, or with other
#: characters, is refused before it is hashed or looked up.
TOKEN_BYTES = 24
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")
#: The roles a reader sees (a system prompt is the owner's private instruction).
SHOWN_ROLES = ("user", "assistant")


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def well_formed(token: str) -> bool:
    """Whether ``token`` could be one this module made (checked before any hashing)."""
    return len(token) <= 64 and _TOKEN.fullmatch(token) is not None


@dataclass(frozen=True, slots=True)
class Share:
    id: str
    conversation_id: str
    owner: str
    created_at: float
    revoked_at: float | None


@dataclass(frozen=True, slots=True)
class SharedMessage:
    role: str
    content: str
    model: str | None
    finish_reason: str | None
    #: complete | streaming | incomplete | failed (``store/records.py``).
    status: str
    created_at: float


@dataclass(frozen=True, slots=True)
class SharedConversation:
    """What a link shows: nothing that names the owner or how the answers were made."""

    title: str
    model: str | None
    created_at: float
    messages: list[SharedMessage]


_SHARE_COLUMNS = (
    conversation_shares.c.id,
    conversation_shares.c.conversation_id,
    conversation_shares.c.owner,
    conversation_shares.c.created_at,
    conversation_shares.c.revoked_at,
)

_NOT_SHARED = "No shared conversation at this link; it may have been revoked."


class ShareStore:
    def __init__(self, engine: AsyncEngine, *, max_live: int = MAX_LIVE_SHARES) -> None:
        self.engine = engine
        self.max_live = max_live

    async def create(self, conversation_id: str, owners: Owners) -> tuple[Share, str]:
        """A new link to the conversation (one ``owners`` may reach): the share and its
        token, which is never seen again."""
        token = new_token()
        now = time.time()
        async with self.engine.begin() as connection:
            # The conversation's row is locked (PostgreSQL; SQLite has one writer anyway)
            # so that two links made at once cannot both pass the count.
            found = select(conversations.c.owner).where(conversations.c.id == conversation_id)
            if owners is not None:
                found = found.where(conversations.c.owner.in_(owners))
            owner = (await connection.execute(found.with_for_update())).scalar()
            if owner is None:
                raise NotFound(f"No conversation with id {conversation_id!r}.", param="id")
            await _forget_old_revoked(connection, conversation_id)
            share = Share(new_id(), conversation_id, owner, now, None)
            live = (
                select(func.count())
                .select_from(conversation_shares)
                .where(conversation_shares.c.conversation_id == conversation_id)
                .where(conversation_shares.c.revoked_at.is_(None))
                .scalar_subquery()
            )
            # Counted and inserted in one statement: two links made at once cannot both
            # pass the count (SQLite ignores the row lock above).
            values = select(
                literal(share.id),
                literal(conversation_id),
                literal(owner),
                literal(hash_key(token)),
                literal(now),
            ).where(live < self.max_live)
            columns = ["id", "conversation_id", "owner", "token_hash", "created_at"]
            inserted = await connection.execute(
                insert(conversation_shares).from_select(columns, values)
            )
            if inserted.rowcount != 1:
                raise RequestError(
                    f"This conversation already has {self.max_live} live share links (the "
                    "limit); revoke one first.",
                    status=409,
                    code="too_many_shares",
                )
        return share, token

    async def shares(self, conversation_id: str) -> list[Share]:
        """The conversation's links, live and revoked, newest first (the caller checked
        that the conversation is the principal's)."""
        async with self.engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(*_SHARE_COLUMNS)
                    .where(conversation_shares.c.conversation_id == conversation_id)
                    .order_by(conversation_shares.c.created_at.desc(), conversation_shares.c.id)
                )
            ).all()
        return [Share(*row) for row in rows]

    async def revoke(self, conversation_id: str, share_id: str) -> Share:
        """Revoke one of the conversation's links (idempotent: revoking a revoked link
        keeps its first revocation time)."""
        async with self.engine.begin() as connection:
            await connection.execute(
                update(conversation_shares)
                .where(conversation_shares.c.id == share_id)
                .where(conversation_shares.c.conversation_id == conversation_id)
                .where(conversation_shares.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
            row = (
                await connection.execute(
                    select(*_SHARE_COLUMNS)
                    .where(conversation_shares.c.id == share_id)
                    .where(conversation_shares.c.conversation_id == conversation_id)
                )
            ).first()
        if row is None:
            raise NotFound(f"No share link with id {share_id!r}.", param="share_id")
        return Share(*row)

    async def shared(self, token: str) -> SharedConversation:
        """The conversation a live token opens; NotFound for any other token (malformed,
        unknown, revoked, or its conversation deleted), all alike."""
        if not well_formed(token):
            raise NotFound(_NOT_SHARED)
        digest = hash_key(token)
        now = time.time()
        async with self.engine.connect() as connection:
            found = (
                await connection.execute(
                    select(
                        conversation_shares.c.token_hash,
                        conversations.c.id,
                        conversations.c.title,
                        conversations.c.model,
                        conversations.c.created_at,
                        conversations.c.leaf_id,
                    )
                    .join(
                        conversations, conversations.c.id == conversation_shares.c.conversation_id
                    )
                    .where(conversation_shares.c.token_hash == digest)
                    .where(conversation_shares.c.revoked_at.is_(None))
                    # A link speaks for its owner: once the owner's key is revoked or
                    # expired (its owner can no longer revoke it), it stops working too.
                    .where(
                        ~exists()
                        .where(conversation_shares.c.owner == KEY_PREFIX + api_keys.c.id)
                        .where(
                            api_keys.c.revoked_at.is_not(None)
                            | (api_keys.c.expires_at.is_not(None) & (api_keys.c.expires_at <= now))
                        )
                    )
                )
            ).first()
            # The index finds the row by hash; the final comparison is constant-time anyway.
            if found is None or not hmac.compare_digest(found.token_hash, digest):
                raise NotFound(_NOT_SHARED)
            rows = (
                await connection.execute(
                    select(
                        messages.c.id,
                        messages.c.parent_id,
                        messages.c.role,
                        messages.c.content,
                        messages.c.model,
                        messages.c.finish_reason,
                        messages.c.status,
                        messages.c.created_at,
                    ).where(messages.c.conversation_id == found.id)
                )
            ).all()
        return SharedConversation(
            title=found.title,
            model=found.model,
            created_at=found.created_at,
            messages=_shown(rows, found.leaf_id),
        )


def _shown(rows: Sequence[Any], leaf_id: str | None) -> list[SharedMessage]:
    """The questions and answers from the root to ``leaf_id``: the branch the owner sees."""
    return [
        SharedMessage(
            role=row.role,
            content=row.content,
            model=row.model,
            finish_reason=row.finish_reason,
            # A failed answer's partial text must not read as a whole one.
            status=row.status,
            created_at=row.created_at,
        )
        for row in branch(rows, leaf_id)
        if row.role in SHOWN_ROLES
    ]


async def _forget_old_revoked(connection: AsyncConnection, conversation_id: str) -> None:
    """Keep the newest KEEP_REVOKED revoked links of a conversation, so that making and
    revoking links over and over cannot grow the table without bound."""
    old = (
        select(conversation_shares.c.id)
        .where(conversation_shares.c.conversation_id == conversation_id)
        .where(conversation_shares.c.revoked_at.is_not(None))
        .order_by(conversation_shares.c.revoked_at.desc(), conversation_shares.c.id)
        .offset(KEEP_REVOKED)
    )
    stale = [row[0] for row in (await connection.execute(old)).all()]
    if stale:
        await connection.execute(
            delete(conversation_shares).where(conversation_shares.c.id.in_(stale))
        )
