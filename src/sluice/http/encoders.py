"""The relay's encoders: one per edge protocol, each a thin adapter over a pure codec.

- ``OpenAIChunks``: ``data: {chunk}`` records and ``[DONE]`` (``wire.openai_chunks``);
  on the resume endpoint each record carries its number as the SSE ``id``.
- ``ChatEvents``: the chat protocol's frames as named SSE events with ``id:``
  (``wire.chat_frames``), for ``POST /chat`` and its resume.
- ``ChatSocketFrames``: the same frames as WebSocket messages, each with its
  ``stream_id`` and ``seq``.
- ``ResponsesRecords``: the Responses API's semantic events (``wire.responses_events``),
  resumable at a ``sequence_number``.

A new API (Responses, Messages) is one more class here.
"""

from __future__ import annotations

from typing import Any

from sluice.engine.stream import Stream, StreamInfo
from sluice.events import Event, Finish, StreamError
from sluice.wire.chat_frames import ChatFrames, Frame, TurnMetrics, sse
from sluice.wire.errors import stream_error_body
from sluice.wire.openai_chunks import DONE, ChunkEncoder
from sluice.wire.responses_events import ResponseWriter, sse_record


def _ending(event: Event) -> bool:
    kind = type(event)
    return kind is StreamError or (kind is Finish and event.reason == "incomplete")  # type: ignore[union-attr]


def failed(stream: Stream) -> bool:
    events = stream.events
    return bool(events) and type(events[-1]) is StreamError


class OpenAIChunks:
    """``/v1/chat/completions`` records. ``numbered``: with SSE ``id:`` lines counting
    records (the resume endpoint only — the OpenAI SDKs break on ``id:`` lines)."""

    __slots__ = ("_chunks", "_next", "_numbered", "_skip")

    def __init__(self, info: StreamInfo, *, numbered: bool = False) -> None:
        self._chunks = ChunkEncoder(
            info.completion_id, info.created, info.model, include_usage=info.include_usage
        )
        self._numbered = numbered
        self._next = 1
        self._skip = 0

    def resume(self, after: int) -> None:
        # Resume offsets are records: what a client of this API can count.
        self._next = after + 1
        self._skip = after

    def opening(self) -> bytes | None:
        return None

    def encode(self, events: list[Event], first: int) -> bytes | None:
        if self._skip:
            events = self._skipping(events)
        if self._numbered:
            body, self._next = self._chunks.encode_numbered(events, self._next)
        else:
            body = self._chunks.encode(events)
        return body or None

    def _skipping(self, events: list[Event]) -> list[Event]:
        """Drop the records the client already has: encoded (the encoder's state must
        be as if they were sent) but not sent."""
        chunks = self._chunks
        for position, event in enumerate(events):
            if not self._skip or _ending(event):
                # An ending is never taken as had: a client can hold records its
                # stream's log never got (the instance writing both died between the
                # two), and must still learn how the stream ended.
                return events[position:]
            if chunks.encode_one(event):
                self._skip -= 1
        return []

    def closing(self, stream: Stream) -> bytes | None:
        # A failed stream never ends with a clean [DONE]: clients must see it failed.
        return None if failed(stream) else DONE

    def interruption(self, error: StreamError) -> bytes:
        return b"data: " + stream_error_body(error) + b"\n\n"


class _Turn:
    """The chat protocol's frames of one turn, from a stream's events."""

    __slots__ = ("_after", "_frames", "_start")

    def __init__(self, info: StreamInfo, *, start: bool) -> None:
        self._frames = ChatFrames(info.id, info.conversation_id, info.message_id, info.model)
        self._start = start
        self._after = 0

    def resume(self, after: int) -> None:
        # Events up to ``after`` rebuild the text the done frame reports, unsent.
        self._after = after

    def error_frame(self, error: StreamError) -> Frame:
        frame = self._frames.frame(error)
        assert frame is not None  # an error always makes a frame
        return frame

    def start_frame(self) -> Frame | None:
        return self._frames.start() if self._start else None

    def frames(self, events: list[Event], first: int) -> list[tuple[int, Frame]]:
        out = self._frames.frames(events, first)
        if first <= self._after:
            out = [(seq, frame) for seq, frame in out if seq > self._after]
        return out

    def done_frame(self, stream: Stream) -> tuple[int, Frame] | None:
        if self._frames.failed:
            return None
        timing = stream.timing()
        metrics = TurnMetrics(ttft_ms=timing.ttft_ms, duration_ms=timing.duration_ms)
        return len(stream.events), self._frames.done(metrics)


class ChatEvents(_Turn):
    """Chat frames as named SSE events, each with its event's sequence number as id."""

    def opening(self) -> bytes | None:
        frame = self.start_frame()
        return None if frame is None else sse(frame)

    def encode(self, events: list[Event], first: int) -> bytes | None:
        body = b"".join(sse(frame, seq) for seq, frame in self.frames(events, first))
        return body or None

    def closing(self, stream: Stream) -> bytes | None:
        done = self.done_frame(stream)
        return None if done is None else sse(done[1], done[0])

    def interruption(self, error: StreamError) -> bytes:
        return sse(self.error_frame(error))


class ChatSocketFrames(_Turn):
    """Chat frames for a WebSocket: each a JSON object with ``stream_id`` and ``seq``."""

    __slots__ = ("_stream_id",)

    def __init__(self, info: StreamInfo, *, start: bool) -> None:
        super().__init__(info, start=start)
        self._stream_id = info.id

    def _tagged(self, seq: int | None, frame: Frame) -> dict[str, Any]:
        frame["stream_id"] = self._stream_id
        frame["seq"] = seq
        return frame

    def opening(self) -> list[Frame] | None:
        frame = self.start_frame()
        return None if frame is None else [self._tagged(None, frame)]

    def encode(self, events: list[Event], first: int) -> list[Frame] | None:
        frames = [self._tagged(seq, frame) for seq, frame in self.frames(events, first)]
        return frames or None

    def closing(self, stream: Stream) -> list[Frame] | None:
        done = self.done_frame(stream)
        return None if done is None else [self._tagged(done[0], done[1])]

    def interruption(self, error: StreamError) -> list[Frame]:
        return [self._tagged(None, self.error_frame(error))]


class ResponsesRecords:
    """``/v1/responses`` records. Resume offsets are sequence numbers: records up to
    ``after`` are built (the writer's state must be as if they were sent), not sent.
    ``numbered``: each record also carries its number as the SSE ``id``.

    ``response.created`` goes out with the first events, not before them: until then
    the status is still open, and an error that comes first is an HTTP error, as on
    chat completions."""

    __slots__ = ("_after", "_numbered", "_opened", "_writer")

    def __init__(self, writer: ResponseWriter, *, after: int = -1, numbered: bool = False) -> None:
        self._writer = writer
        self._after = after
        self._numbered = numbered
        self._opened = False

    def resume(self, after: int) -> None:
        self._after = after

    def _opening(self) -> list[dict[str, Any]]:
        if self._opened:
            return []
        self._opened = True
        return self._writer.opening()

    def _bytes(self, records: list[dict[str, Any]]) -> bytes | None:
        after, numbered = self._after, self._numbered
        body = b"".join(
            sse_record(record, numbered=numbered)
            for record in records
            if record["sequence_number"] > after
        )
        return body or None

    def opening(self) -> bytes | None:
        return None

    def encode(self, events: list[Event], first: int) -> bytes | None:
        opening = self._opening()  # numbered before the events' records
        return self._bytes([*opening, *self._writer.feed(events)])

    def closing(self, stream: Stream) -> bytes | None:
        opening = self._opening()
        record = self._writer.closing()
        return self._bytes([*opening, *([] if record is None else [record])])

    def interruption(self, error: StreamError) -> bytes:
        opening = self._bytes(self._opening()) or b""
        return opening + sse_record(self._writer.interruption(error))
