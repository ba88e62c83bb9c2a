"""Continue generating: which answers can be carried on (the one a turn names, checked),
and saving one as a single message (its earlier text, then what the model adds)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Collection

from sluice.chat.saver import Saver
from sluice.engine.generation import Generation
from sluice.errors import NotFound, RequestError
from sluice.store.conversations import ConversationStore, Message

#: How long a continue waits for the answer it extends to be saved (seconds).
SETTLE_SECONDS = 2.0


def continuable(message: Message) -> bool:
    """Whether an answer can be carried on: stopped, interrupted or cut off, with text."""
    ended = message.status == "incomplete" or message.finish_reason == "length"
    return ended and message.status != "streaming" and bool(message.content)


class ContinuingSaver(Saver):
    """Saves a continued answer as one message: its earlier text, then the new text
    (every turn's saver: with no earlier text it is a plain Saver)."""

    def __init__(
        self,
        prefix: str,
        generation: Generation,
        store: ConversationStore,
        message_id: str,
        *,
        interval: float,
    ) -> None:
        self._prefix = prefix  # set before the task (started by Saver) first reads it
        super().__init__(generation, store, message_id, interval=interval)

    def _text(self) -> str:
        return self._prefix + super()._text()


async def extended(
    store: ConversationStore, savers: Collection[Saver], message_id: str, conversation_id: str
) -> Message:
    """The answer a continue turn extends, checked: in this conversation (else not found,
    like one that never was: another owner's too), and stopped, interrupted or cut off."""
    try:
        target = await store.message(message_id)
    except NotFound:
        target = None
    if target is None or target.conversation_id != conversation_id:
        raise NotFound(f"No message with id {message_id!r}.", param="continue_id")
    if target.status == "streaming":
        target = await _saved(store, savers, target)
    if target.role != "assistant" or target.parent_id is None or not continuable(target):
        raise RequestError(
            "Only an answer that was stopped, interrupted or cut off at the token limit, "
            "with some text, can be continued.",
            param="continue_id",
        )
    return target


async def _saved(store: ConversationStore, savers: Collection[Saver], answer: Message) -> Message:
    """The answer once its final state is written, if its generation has ended: a
    Continue sent right after the done frame must not find it still "streaming"."""
    for saver in list(savers):
        if saver.generation.id == answer.stream_id:
            if not saver.generation.log.closed:
                return answer  # really still being written: not continuable
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(saver.task), SETTLE_SECONDS)
            return await store.message(answer.id)
    # Saved by another instance: give its final write a moment.
    deadline = time.monotonic() + SETTLE_SECONDS
    while answer.status == "streaming" and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        answer = await store.message(answer.id)
    return answer
