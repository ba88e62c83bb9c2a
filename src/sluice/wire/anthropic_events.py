"""Events -> the Anthropic Messages stream (``message_start``, ``content_block_*``,
``message_delta``, ``message_stop``, ``error``) and the non-streamed ``Message``.

Shapes as the official SDK types them (``anthropic.types.RawMessageStreamEvent``) and
accumulates them (``anthropic.lib.streaming._messages.accumulate_event``). One choice
(Messages has no ``n``). Blocks follow each other: text, thinking and each tool call
get a block of their own, opened at their first delta and closed when another starts
or the answer ends. ``message_start`` reports ``input_tokens`` 0 — usage comes last on
every upstream — and ``message_delta`` the real counts, which the SDK takes over.

Every record counts, from 1, for resuming (``?after=N``); ``ping`` is not a record.
"""

from __future__ import annotations

from typing import Any

import orjson

from sluice.events import (
    Event,
    Finish,
    ReasoningDelta,
    StreamError,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from sluice.wire.anthropic_errors import error_object, error_type

#: Finish reasons -> Anthropic stop reasons. A stopped answer (``incomplete``) ended
#: where it was: ``end_turn`` (Messages has nothing closer; ``pause_turn`` would invite
#: clients to send it back for more).
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
    "incomplete": "end_turn",
}
PING = b'event: ping\ndata: {"type":"ping"}\n\n'
_TEXT_HEAD = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
    b'"delta":{"type":"text_delta","text":'
)
_TEXT_TAIL = b"}}\n\n"

Record = tuple[str, dict[str, Any]]


def message_id(stream_id: str) -> str:
    return f"msg_{stream_id}"


class MessageRecords:
    """A stream's events -> its Messages records, in order, keeping the block state."""

    __slots__ = (
        "_blocks",
        "_calls",
        "_id",
        "_kind",
        "_model",
        "_open",
        "_text_head",
        "finish",
        "started",
    )

    def __init__(self, message_id: str, model: str) -> None:
        self._id = message_id
        self._model = model
        self.started = False
        self._blocks = 0
        #: The open block's index and kind ("text", "thinking", "tool_use"), if any.
        self._open: int | None = None
        self._kind: str | None = None
        #: Tool call index -> its block.
        self._calls: dict[int, int] = {}
        #: The open text block's delta records up to the text (the fast path's template).
        self._text_head: bytes | None = None
        self.finish: str | None = None

    def start(self) -> Record:
        self.started = True
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return "message_start", {"type": "message_start", "message": message}

    def records(self, events: list[Event], out: list[Record]) -> None:
        for event in events:
            kind = type(event)
            if kind is TextDelta:
                assert isinstance(event, TextDelta)
                if event.index == 0 and event.text:
                    block = self._block("text", out)
                    out.append(_delta(block, {"type": "text_delta", "text": event.text}))
            elif kind is ToolCallDelta:
                assert isinstance(event, ToolCallDelta)
                if event.index == 0:
                    self._tool_call(event, out)
            elif kind is ReasoningDelta:
                assert isinstance(event, ReasoningDelta)
                if event.index == 0 and event.text:
                    block = self._block("thinking", out)
                    out.append(_delta(block, {"type": "thinking_delta", "thinking": event.text}))
            elif kind is Finish:
                assert isinstance(event, Finish)
                if event.index == 0:
                    self.finish = event.reason
            elif kind is StreamError:
                assert isinstance(event, StreamError)
                self._close(out)
                out.append(error_record(event))
            elif not self.started and kind is not Usage:
                out.append(self.start())

    def text_only(self, events: list[Event]) -> bytes | None:
        """The per-chunk fast path: a batch of text for the open text block, written
        from a template (the same bytes ``sse`` writes for its records); None for any
        other batch."""
        head = self._text_head
        if head is None:
            return None
        if len(events) == 1:  # the usual batch: one upstream read, one token
            event = events[0]
            if type(event) is TextDelta and event.index == 0 and event.text:
                return head + orjson.dumps(event.text) + _TEXT_TAIL
            return None
        for event in events:
            if type(event) is not TextDelta or event.index != 0 or not event.text:
                return None
        return b"".join(
            head + orjson.dumps(event.text) + _TEXT_TAIL  # type: ignore[union-attr]
            for event in events
        )

    def end(self, usage: Usage | None) -> list[Record]:
        """The records after the last event of an answer that ended well."""
        out: list[Record] = []
        if not self.started:
            out.append(self.start())
        self._close(out)
        delta = {
            "stop_reason": STOP_REASONS.get(self.finish or "stop", "end_turn"),
            "stop_sequence": None,
        }
        counts = {"output_tokens": 0}
        if usage is not None:
            counts = {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens}
        out.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": counts}))
        out.append(("message_stop", {"type": "message_stop"}))
        return out

    def _block(self, kind: str, out: list[Record]) -> int:
        if self._kind == kind and self._open is not None:
            return self._open
        if not self.started:
            out.append(self.start())
        self._close(out)
        index = self._open = self._blocks
        self._blocks += 1
        self._kind = kind
        content: dict[str, Any] = (
            {"type": "text", "text": ""}
            if kind == "text"
            else {"type": "thinking", "thinking": "", "signature": ""}
        )
        if kind == "text":
            self._text_head = _TEXT_HEAD % index
        out.append(_block_start(index, content))
        return index

    def _tool_call(self, event: ToolCallDelta, out: list[Record]) -> None:
        block = self._calls.get(event.call_index)
        if block is None:
            if not self.started:
                out.append(self.start())
            self._close(out)
            block = self._open = self._calls[event.call_index] = self._blocks
            self._blocks += 1
            self._kind = "tool_use"
            content = {
                "type": "tool_use",
                "id": event.id or "",
                "name": event.name or "",
                "input": {},
            }
            out.append(_block_start(block, content))
        if event.arguments:
            out.append(_delta(block, {"type": "input_json_delta", "partial_json": event.arguments}))

    def _close(self, out: list[Record]) -> None:
        if self._open is not None:
            out.append(("content_block_stop", {"type": "content_block_stop", "index": self._open}))
            self._open = self._kind = self._text_head = None


def _block_start(index: int, content: dict[str, Any]) -> Record:
    return "content_block_start", {
        "type": "content_block_start",
        "index": index,
        "content_block": content,
    }


def _delta(index: int, delta: dict[str, Any]) -> Record:
    return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}


def error_record(error: StreamError) -> Record:
    return "error", error_object(error_type(error.status), error.message, hint=error.hint)


def sse(record: Record, number: int | None = None) -> bytes:
    """One record as an event-stream block; ``number`` its SSE id (resume endpoint)."""
    name, data = record
    head = b"event: " + name.encode() + b"\n"
    if number is not None:
        head += b"id: %d\n" % number
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


class MessagesSSE:
    """Events -> Messages stream bytes, skipping the first ``skip`` records (a resumed
    client has them) and numbering records when ``numbered``."""

    __slots__ = ("_next", "_numbered", "_records", "skip")

    def __init__(self, message_id: str, model: str, *, numbered: bool = False) -> None:
        self._records = MessageRecords(message_id, model)
        self._numbered = numbered
        self._next = 1
        self.skip = 0

    def encode(self, events: list[Event]) -> bytes:
        if not self.skip and not self._numbered:
            fast = self._records.text_only(events)
            if fast is not None:
                return fast
        out: list[Record] = []
        self._records.records(events, out)
        return self._write(out)

    def end(self, usage: Usage | None) -> bytes:
        return self._write(self._records.end(usage))

    def _write(self, records: list[Record]) -> bytes:
        if self.skip:
            dropped = min(self.skip, len(records))
            self.skip -= dropped
            self._next += dropped
            records = records[dropped:]
        if not self._numbered:
            return b"".join(sse(record) for record in records)
        first = self._next
        self._next += len(records)
        return b"".join(sse(record, first + i) for i, record in enumerate(records))


def last_usage(events: list[Event]) -> Usage | None:
    return next((e for e in reversed(events) if type(e) is Usage), None)


def message_object(events: list[Event], message_id: str, model: str) -> dict[str, Any]:
    """A whole answer's events -> the non-streamed ``Message``: the records the stream
    would carry, accumulated as the SDK does (so both always agree)."""
    writer = MessageRecords(message_id, model)
    records: list[Record] = []
    writer.records(events, records)
    records += writer.end(last_usage(events))
    return accumulate(records)


def accumulate(records: list[Record]) -> dict[str, Any]:
    """Messages records -> the ``Message`` they build (``input_json_delta`` text joined
    and parsed at the block's end)."""
    message: dict[str, Any] = {}
    partial: dict[int, str] = {}
    for name, data in records:
        if name == "message_start":
            message = dict(data["message"], content=[], usage=dict(data["message"]["usage"]))
        elif name == "content_block_start":
            message["content"].append(dict(data["content_block"]))
        elif name == "content_block_delta":
            block = message["content"][data["index"]]
            delta = data["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "input_json_delta":
                partial[data["index"]] = partial.get(data["index"], "") + delta["partial_json"]
        elif name == "message_delta":
            message.update(data["delta"])
            message["usage"].update(data["usage"])
    for index, text in partial.items():
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            value = None
        # A model can stop mid-call (max_tokens): its input is then what parses, or {}.
        message["content"][index]["input"] = value if isinstance(value, dict) else {}
    return message
