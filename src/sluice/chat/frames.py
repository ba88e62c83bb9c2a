"""A chat turn's frames, for the in-process terminal chat: the chat protocol's codec
(``wire.chat_frames``) over the turn's stream (network edges use the relay instead)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from sluice.chat.service import Turn
from sluice.engine.stream import LocalStream, batches
from sluice.wire.chat_frames import ChatFrames, Frame, TurnMetrics


async def turn_frames(turn: Turn) -> AsyncIterator[Frame]:
    """A turn's frames, start to done (no done frame after an error), live."""
    stream = LocalStream(turn.generation)
    info = stream.info
    frames = ChatFrames(info.id, info.conversation_id, info.message_id, info.model)
    yield frames.start()
    seen = 0
    async for batch in batches(stream):
        for _, frame in frames.frames(batch, seen + 1):
            yield frame
        seen += len(batch)
    if not frames.failed:
        timing = stream.timing()
        yield frames.done(TurnMetrics(ttft_ms=timing.ttft_ms, duration_ms=timing.duration_ms))
