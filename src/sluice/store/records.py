"""The stored values of the conversation store: a conversation, a message, and who may
see them (``Owners``). Plain frozen values, no I/O (``conversations.py`` stores them)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("complete", "streaming", "incomplete", "failed")


def new_id() -> str:
    return secrets.token_hex(12)


@dataclass(frozen=True, slots=True)
class Conversation:
    id: str
    owner: str
    title: str
    system_prompt: str | None
    model: str | None
    options: dict[str, Any]
    leaf_id: str | None
    created_at: float
    updated_at: float
    #: When the owner pinned it to the top of the list (None: not pinned).
    pinned_at: float | None = None


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    conversation_id: str
    parent_id: str | None
    role: str
    content: str
    model: str | None = None
    status: str = "complete"
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    usage_estimated: bool = False
    ttft_ms: float | None = None
    duration_ms: float | None = None
    stream_id: str | None = None
    #: Served from the response cache (or an identical answer in flight).
    cached: bool = False
    error: str | None = None
    created_at: float = field(default=0.0)
    updated_at: float = field(default=0.0)
    #: Files that came with a question (``chat/attachments.py``): kind, name, media type,
    #: size and the bytes (base64), as sent upstream again when the history is replayed.
    attachments: list[dict[str, Any]] | None = None


#: Which owners' conversations a call may see: a tuple of owners, or ANY (the admin's
#: explicit view of everything). Every method that takes a conversation id checks it;
#: a conversation of another owner is "not found".
Owners = tuple[str, ...] | None
ANY: Owners = None
