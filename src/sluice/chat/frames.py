"""A chat turn's frames, live: the one producer behind /chat (SSE), /ws (WebSocket),
the resume endpoint and the terminal chat."""

from __future__ import annotations

from collections.abc import AsyncIterator

from sluice.chat.service import Turn
from sluice.wire.chat_frames import ChatFrames, Frame, TurnMetrics


async def turn_frames(
    turn: Turn, *, after: int, start: bool
) -> AsyncIterator[list[tuple[int | None, Frame]]]:
    """A turn's frames from event ``after`` on, live to its end, in batches of
    (sequence number, frame). An empty batch means "woken with nothing new" (a
    keep-alive tick or a disconnect): the caller checks and carries on."""
    generation = turn.generation
    log = generation.log
    events = log.events
    frames = ChatFrames(generation.id, turn.conversation_id, turn.message_id, turn.model)
    if start:
        yield [(None, frames.start())]
    # Replayed events rebuild the text the done frame reports, without being resent.
    seen = min(after, len(events))
    for event in events[:seen]:
        frames.frame(event)
    while True:
        count = len(events)
        if count > seen:
            batch = frames.frames(events[seen:count], seen + 1)
            seen = count
            yield list(batch)
        elif log.closed:
            break
        else:
            await log.wait(seen)
            if len(events) == seen and not log.closed:
                yield []
    if not frames.failed:
        yield [(len(events), frames.done(metrics_of(turn)))]


def metrics_of(turn: Turn) -> TurnMetrics:
    generation = turn.generation
    started, first, finished = (
        generation.started_at,
        generation.first_token_at,
        generation.finished_at,
    )
    return TurnMetrics(
        ttft_ms=(first - started) * 1000 if first else None,
        duration_ms=(finished - started) * 1000 if finished else None,
    )
