"""What a chat turn asks: the question (new, an edited version, one asked again, or one
whose answer is carried on), where it goes in the message tree, and the history the model
reads before it — a stored question with its files (``chat/attachments.py``) again."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sluice.chat.attachments import user_message
from sluice.chat.continuing import extended
from sluice.chat.saver import Saver
from sluice.chat.turns import TurnRequest
from sluice.errors import NotFound, RequestError
from sluice.store.conversations import ConversationStore, Message


@dataclass(frozen=True, slots=True)
class Plan:
    history: list[Message]
    question: str
    #: Where a new question goes in the tree.
    parent: str | None
    #: An existing question to answer again (regenerate) instead of storing a new one.
    reuse: str | None
    #: The answer a continue turn carries on (its text so far is the new text's prefix).
    extends: Message | None = None
    #: Files that go with the question (``chat/attachments.py``), as stored.
    attachments: list[dict[str, Any]] | None = None


async def plan_turn(
    store: ConversationStore,
    savers: Collection[Saver],
    turn: TurnRequest,
    conversation_id: str,
    files: list[dict[str, Any]] | None,
) -> Plan:
    """What ``turn`` asks of ``conversation_id``: the question (new, edited, asked again
    or carried on), where it goes in the tree, and the history before it."""
    if turn.continue_id is not None:
        return await _continue_plan(store, savers, turn.continue_id, conversation_id)
    path = await store.path(conversation_id)
    if turn.regenerate:
        asked = [i for i, m in enumerate(path) if m.role == "user"]
        if not asked:
            raise RequestError("There is no question to answer again.", param="regenerate")
        question = path[asked[-1]]
        return Plan(
            path[: asked[-1]],
            question.content,
            question.parent_id,
            question.id,
            attachments=question.attachments,
        )
    if turn.edit is not None:
        # Unknown and another conversation's look the same: no hint either exists.
        try:
            target = await store.message(turn.edit.message_id)
        except NotFound:
            target = None
        mine = target is not None and target.conversation_id == conversation_id
        if target is None or not mine or target.role != "user":
            raise RequestError(
                "edit.message_id must be a question (user message) of this conversation.",
                param="edit.message_id",
            )
        before = await store.path(conversation_id, target.parent_id) if target.parent_id else []
        # A new version of the question keeps the files the first one had.
        return Plan(
            before, turn.edit.content, target.parent_id, None, attachments=target.attachments
        )
    assert turn.message is not None
    return Plan(path, turn.message, path[-1].id if path else None, None, attachments=files)


async def _continue_plan(
    store: ConversationStore, savers: Collection[Saver], message_id: str, conversation_id: str
) -> Plan:
    target = await extended(store, savers, message_id, conversation_id)
    assert target.parent_id is not None  # an answer always answers a question
    asked = await store.path(conversation_id, target.parent_id)
    question = asked[-1]
    return Plan(
        asked[:-1],
        question.content,
        question.parent_id,
        question.id,
        target,
        attachments=question.attachments,
    )


def history_messages(history: list[Message]) -> list[dict[str, Any]]:
    """The stored messages the model reads again, as chat messages."""
    return [as_message(m) for m in history if usable(m)]


def usable(message: Message) -> bool:
    # Failed answers and empty placeholders are not history the model should see.
    return bool(message.content) and message.status != "failed"


def as_message(message: Message) -> dict[str, Any]:
    if message.role == "user":
        return user_message(message.content, message.attachments)
    return {"role": message.role, "content": message.content}


def typed(content: Any) -> str:
    """The question's own text in its content (the first part, when there are files)."""
    if isinstance(content, list):
        return str(content[0].get("text") or "")
    return str(content)
