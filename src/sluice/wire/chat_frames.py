"""The chat application protocol: events of one turn -> frames, for SSE and WebSocket.

Frames are JSON objects with a ``type``: ``start`` (ids and model), ``content`` (a text
delta), ``reasoning`` (a delta of the model's reasoning, shown apart and not stored),
``tool_call``, ``usage``, ``failover``, ``done`` (finish reason, the full text,
time to first token, tokens per second) and ``error`` (error_type, message, code,
retryable). On SSE each frame is an event named after its type, with the sequence number
of the event it came from as ``id:`` so a client can resume after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from sluice.events import (
    Event,
    Failover,
    Finish,
    ReasoningDelta,
    StreamError,
    TextDelta,
    ToolCallDelta,
    Usage,
)

Frame = dict[str, Any]


@dataclass
class TurnMetrics:
    """What the done frame reports about timing, when the gateway measured it."""

    ttft_ms: float | None = None
    duration_ms: float | None = None


@dataclass
class ChatFrames:
    stream_id: str
    conversation_id: str | None
    message_id: str | None
    model: str
    text: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
    failed: bool = False

    def start(self) -> Frame:
        return {
            "type": "start",
            "stream_id": self.stream_id,
            "conversation_id": self.conversation_id,
            "message_id": self.message_id,
            "model": self.model,
        }

    def frames(self, events: list[Event], first: int) -> list[tuple[int, Frame]]:
        """(sequence number, frame) for each event that makes one."""
        out: list[tuple[int, Frame]] = []
        for seq, event in enumerate(events, first):
            frame = self.frame(event)
            if frame is not None:
                out.append((seq, frame))
        return out

    def frame(self, event: Event) -> Frame | None:
        kind = type(event)
        if kind is TextDelta:
            assert isinstance(event, TextDelta)
            if event.index != 0:
                return None  # the app protocol carries one choice
            self.text.append(event.text)
            return {"type": "content", "content": event.text}
        if kind is ReasoningDelta:
            assert isinstance(event, ReasoningDelta)
            return {"type": "reasoning", "content": event.text} if event.index == 0 else None
        if kind is ToolCallDelta:
            assert isinstance(event, ToolCallDelta)
            return {
                "type": "tool_call",
                "index": event.call_index,
                "id": event.id,
                "name": event.name,
                "arguments": event.arguments,
            }
        if kind is Finish:
            assert isinstance(event, Finish)
            if event.index == 0:
                self.finish_reason = event.reason
            return None
        if kind is Usage:
            assert isinstance(event, Usage)
            self.usage = event
            return {
                "type": "usage",
                "prompt_tokens": event.prompt_tokens,
                "completion_tokens": event.completion_tokens,
                "total_tokens": event.total_tokens,
                "estimated": bool(event.details.get("estimated")),
                "cached": bool(event.details.get("cached")),
            }
        if kind is StreamError:
            assert isinstance(event, StreamError)
            self.failed = True
            return {
                "type": "error",
                "error_type": event.type,
                "message": event.message,
                "code": event.code,
                "retryable": event.retryable,
                "hint": event.hint,
            }
        if kind is Failover:
            assert isinstance(event, Failover)
            return {"type": "failover", "from": event.from_model, "to": event.to_model}
        return None

    def done(self, metrics: TurnMetrics | None = None) -> Frame:
        usage = self.usage
        ttft = metrics.ttft_ms if metrics else None
        duration = metrics.duration_ms if metrics else None
        tokens_per_second = None
        if usage is not None and duration is not None and ttft is not None:
            streaming = (duration - ttft) / 1000
            if streaming > 0 and usage.completion_tokens > 1:
                tokens_per_second = round((usage.completion_tokens - 1) / streaming, 2)
        return {
            "type": "done",
            "stream_id": self.stream_id,
            "conversation_id": self.conversation_id,
            "message_id": self.message_id,
            "finish_reason": self.finish_reason,
            "content": "".join(self.text),
            "ttft_ms": None if ttft is None else round(ttft, 1),
            "tokens_per_second": tokens_per_second,
        }


def sse(frame: Frame, seq: int | None = None) -> bytes:
    kind: str = frame["type"]
    head = b"event: " + kind.encode() + b"\n"
    if seq is not None:
        head += b"id: %d\n" % seq
    return head + b"data: " + orjson.dumps(frame) + b"\n\n"
