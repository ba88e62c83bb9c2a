"""An Anthropic Messages stream -> events (the ``anthropic`` provider's per-record step).

One record at a time, by its SSE event name and parsed data, as the SDK reads them
(``anthropic.types.RawMessageStreamEvent``): a choice starts at its first content block
(so a tool call first is told, as OpenAI's ``content: null`` tells it), ``text_delta``
-> text, ``input_json_delta`` -> tool-call arguments, ``thinking_delta`` -> reasoning,
``message_delta`` -> the finish and the usage (input tokens from ``message_start``
unless the delta restates them). An ``error`` record ends the stream: ``error`` then
holds its type and message, for the provider to raise as what it means.
"""

from __future__ import annotations

from typing import Any

import orjson

from sluice.events import Event, Finish, ReasoningDelta, RoleStart, TextDelta, ToolCallDelta, Usage

#: Anthropic stop reasons -> finish reasons.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class MessagesDecoder:
    """Feed it each record of one Messages stream; it appends the events they mean."""

    __slots__ = ("_calls", "_created", "_input", "_output", "_read", "ended", "error", "started")

    def __init__(self) -> None:
        self.started = False
        #: Block index -> tool call index, for the tool-use blocks.
        self._calls: dict[int, int] = {}
        self._input = 0
        self._read = 0
        self._created = 0
        self._output = 0
        #: True once the answer finished (``message_delta`` with its stop reason).
        self.ended = False
        #: ``(type, message)`` of an ``error`` record, when one came.
        self.error: tuple[str, str] | None = None

    def feed(self, name: str, data: dict[str, Any], out: list[Event]) -> bool:
        """Append the events of one record; True when the stream is over (its
        ``message_stop``, or an error)."""
        kind = data.get("type", name)
        if kind == "content_block_delta":
            self._delta(data, out)
        elif kind == "content_block_start":
            self._start(data, out)
        elif kind == "message_start":
            self._counts(data.get("message", {}).get("usage"))
        elif kind == "message_delta":
            self._counts(data.get("usage"))
            self._finish(data.get("delta") or {}, out)
        elif kind == "message_stop":
            return True
        elif kind == "error":
            error = data.get("error")
            if not isinstance(error, dict):
                error = {}
            self.error = (str(error.get("type") or "api_error"), str(error.get("message") or ""))
            return True
        return False

    def _begin(self, tool_call: bool, out: list[Event]) -> None:
        if not self.started:
            self.started = True
            out.append(RoleStart(0, tool_call=tool_call))

    def _start(self, data: dict[str, Any], out: list[Event]) -> None:
        index = data.get("index", 0)
        block = data.get("content_block") or {}
        kind = block.get("type")
        if kind == "tool_use":
            self._begin(True, out)
            call = self._calls[index] = len(self._calls)
            given = block.get("input")
            out.append(
                ToolCallDelta(
                    call,
                    # Some servers send the whole input at the start, not as deltas.
                    _json(given) if given else "",
                    id=block.get("id"),
                    name=block.get("name"),
                    type="function",
                )
            )
        elif kind == "text":
            self._begin(False, out)
            if block.get("text"):
                out.append(TextDelta(block["text"]))
        elif kind == "thinking":
            self._begin(False, out)
            if block.get("thinking"):
                out.append(ReasoningDelta(block["thinking"]))

    def _delta(self, data: dict[str, Any], out: list[Event]) -> None:
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            self._begin(False, out)
            out.append(TextDelta(delta.get("text", "")))
        elif kind == "input_json_delta":
            call = self._calls.get(data.get("index", 0))
            if call is not None and delta.get("partial_json"):
                out.append(ToolCallDelta(call, delta["partial_json"]))
        elif kind == "thinking_delta":
            self._begin(False, out)
            out.append(ReasoningDelta(delta.get("thinking", "")))
        # signature_delta, citations_delta: nothing the events carry.

    def _counts(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        # Counts are cumulative: a later value replaces an earlier one.
        if isinstance(usage.get("input_tokens"), int):
            self._input = usage["input_tokens"]
        if isinstance(usage.get("cache_read_input_tokens"), int):
            self._read = usage["cache_read_input_tokens"]
        if isinstance(usage.get("cache_creation_input_tokens"), int):
            self._created = usage["cache_creation_input_tokens"]
        if isinstance(usage.get("output_tokens"), int):
            self._output = usage["output_tokens"]

    def _finish(self, delta: dict[str, Any], out: list[Event]) -> None:
        self._begin(False, out)
        reason = FINISH_REASONS.get(delta.get("stop_reason") or "end_turn", "stop")
        out.append(Finish(reason))
        out.append(self.usage())
        self.ended = True

    def usage(self) -> Usage:
        """The counts so far, as a Usage (prompt tokens include cache reads and writes,
        as OpenAI's ``prompt_tokens`` include ``cached_tokens``, the reads)."""
        prompt = self._input + self._read + self._created
        details: dict[str, Any] = {}
        if self._read:
            details["prompt_tokens_details"] = {"cached_tokens": self._read}
        return Usage(prompt, self._output, prompt + self._output, details)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()
