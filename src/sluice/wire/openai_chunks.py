"""OpenAI ``chat.completion.chunk`` objects <-> sluice events.

``decode_chunk`` turns one upstream chunk into events; ``ChunkEncoder`` writes events as
the SSE records OpenAI sends (``data: <json>`` only, ``data: [DONE]`` at the end, never
``id:``/``event:`` lines, which break the official SDKs); ``ChunkObjects`` gives the same
chunks as objects, for readers in this process; ``Completion`` assembles events into a
non-streamed ``chat.completion`` object. All pure, all cheap: these run once per
chunk.
"""

from __future__ import annotations

from typing import Any

import orjson

from sluice.errors import UpstreamError, UpstreamProtocolError
from sluice.events import (
    Event,
    Failover,
    Finish,
    ReasoningDelta,
    ResponseMeta,
    RoleStart,
    StreamError,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from sluice.wire.errors import stream_error_body, stream_error_object

DONE = b"data: [DONE]\n\n"
_TEXT_TAIL = b'},"logprobs":null,"finish_reason":null}]}\n\n'


def decode_chunk(chunk: Any, out: list[Event]) -> bool:
    """Append the events of one parsed upstream chunk to ``out``; True if a choice
    finished. Raises UpstreamError for an in-band error record and
    UpstreamProtocolError for anything that is not a chunk."""
    if type(chunk) is not dict:
        raise UpstreamProtocolError("upstream sent a chunk that is not a JSON object")
    finished = False
    meta_seen = False
    choices = chunk.get("choices")
    if choices:
        if type(choices) is not list:
            raise UpstreamProtocolError("upstream chunk has a 'choices' that is not a list")
        for choice in choices:
            try:
                delta = choice.get("delta")
                # The common case first: a plain text delta, one dict lookup per field.
                if (
                    delta
                    and len(delta) == 1
                    and "content" in delta
                    and not choice.get("finish_reason")
                ):
                    content = delta["content"]
                    if content:
                        out.append(
                            TextDelta(content, choice.get("index", 0), choice.get("logprobs"))
                        )
                    continue
                if delta and "role" in delta and not meta_seen:
                    # Response-wide facts ride on every chunk; read once per chunk that
                    # opens a choice, never on the per-token path above.
                    meta_seen = True
                    meta = decode_meta(chunk)
                    if meta is not None:
                        out.append(meta)
                finished = _decode_choice(choice, delta or {}, out) or finished
            except AttributeError:
                raise UpstreamProtocolError("upstream chunk has a malformed choice") from None
    usage = chunk.get("usage")
    if usage:
        out.append(decode_usage(usage))
    error = chunk.get("error")
    if error:
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise UpstreamError(f"upstream failed mid-stream: {message or 'unknown error'}")
    return finished


def _decode_choice(choice: dict[str, Any], delta: dict[str, Any], out: list[Event]) -> bool:
    index = choice.get("index", 0)
    if delta.get("role"):
        # OpenAI opens a tool call with content null (and the call in the same delta;
        # a gateway like this one may send it in the next): null is its "no text here".
        content = delta.get("content", "")
        opens_call = content is None or (bool(delta.get("tool_calls")) and not content)
        out.append(RoleStart(index, delta["role"], opens_call))
    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
    if reasoning:
        out.append(ReasoningDelta(reasoning, index))
    content = delta.get("content")
    if content:
        out.append(TextDelta(content, index, choice.get("logprobs")))
    for call in delta.get("tool_calls") or ():
        function = call.get("function") or {}
        out.append(
            ToolCallDelta(
                call_index=call.get("index", 0),
                arguments=function.get("arguments") or "",
                id=call.get("id"),
                name=function.get("name"),
                index=index,
                type=call.get("type"),
            )
        )
    reason = choice.get("finish_reason")
    if reason:
        out.append(Finish(reason, index))
        return True
    return False


def decode_meta(chunk: dict[str, Any]) -> ResponseMeta | None:
    """The response-wide facts a chunk carries, if any (strings only: a number or an
    object there is not OpenAI's and is not passed on)."""
    fingerprint = chunk.get("system_fingerprint")
    tier = chunk.get("service_tier")
    fingerprint = fingerprint if isinstance(fingerprint, str) else None
    tier = tier if isinstance(tier, str) else None
    if fingerprint is None and tier is None:
        return None
    return ResponseMeta(fingerprint, tier)


def meta_fields(meta: ResponseMeta) -> dict[str, str]:
    """``meta`` as the fields of a chunk or completion, in the order OpenAI writes them."""
    fields = {}
    if meta.service_tier is not None:
        fields["service_tier"] = meta.service_tier
    if meta.system_fingerprint is not None:
        fields["system_fingerprint"] = meta.system_fingerprint
    return fields


def decode_usage(usage: dict[str, Any]) -> Usage:
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    details = {k: v for k, v in usage.items() if k.endswith("_details") and v}
    return Usage(prompt, completion, int(usage.get("total_tokens") or prompt + completion), details)


def usage_object(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        **usage.details,
    }


class ChunkEncoder:
    """Events -> the bytes of OpenAI's SSE stream for one response.

    The constant head of every chunk (id, object, created, model) is serialised once per
    stream; each event then costs one small ``orjson.dumps``.
    """

    __slots__ = (
        "_failovers",
        "_fields",
        "_head",
        "_include_usage",
        "_sent_role",
        "_text_head",
        "_tool_started",
    )

    def __init__(
        self, completion_id: str, created: int, model: str, *, include_usage: bool
    ) -> None:
        self._fields: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        self._set_head()
        self._include_usage = include_usage
        self._sent_role: set[int] = set()
        self._tool_started: set[tuple[int, int]] = set()
        self._failovers: list[dict[str, str]] = []

    def encode(self, events: list[Event]) -> bytes:
        parts = []
        for event in events:
            record = self.encode_one(event)
            if record:
                parts.append(record)
        return b"".join(parts)

    def encode_numbered(self, events: list[Event], first: int) -> tuple[bytes, int]:
        """Like ``encode``, each record carrying its number as the SSE ``id``, counting
        from ``first`` (for the resume endpoint only: the OpenAI SDKs break on ``id:``
        lines). Records, not events, are counted — a client of /v1/chat/completions can
        only count what it received. Returns the bytes and the next record number."""
        parts = []
        number = first
        for event in events:
            record = self.encode_one(event)
            if record:
                parts.append(b"id: %d\n" % number + record)
                number += 1
        return b"".join(parts), number

    def position_after(self, events: list[Event], records: int) -> int:
        """How many events the first ``records`` records carried; the encoder is left
        as if it had sent them (so what follows is encoded as it would have been)."""
        count = 0
        for position, event in enumerate(events):
            if count >= records:
                return position
            if self.encode_one(event):
                count += 1
        return len(events)

    def _set_head(self) -> None:
        head = orjson.dumps(self._fields)
        self._head = b"data: " + head[:-1] + b',"choices":'
        self._text_head = self._head + b'[{"index":0,"delta":{"content":'

    def encode_one(self, event: Event) -> bytes:
        kind = type(event)
        if kind is TextDelta:
            assert isinstance(event, TextDelta)
            if event.index == 0 and event.logprobs is None:
                return self._text_head + orjson.dumps(event.text) + _TEXT_TAIL
            delta: dict[str, Any] = {"content": event.text}
            return self._choice(event.index, delta, None, event.logprobs)
        if kind is RoleStart:
            assert isinstance(event, RoleStart)
            self._sent_role.add(event.index)
            return self._choice(event.index, _role_delta(event), None)
        if kind is ResponseMeta:
            assert isinstance(event, ResponseMeta)
            # No record of its own: every chunk from here on carries the fields.
            self._fields.update(meta_fields(event))
            self._set_head()
            return b""
        if kind is ToolCallDelta:
            assert isinstance(event, ToolCallDelta)
            return self._choice(event.index, {"tool_calls": [self._tool_call(event)]}, None)
        if kind is Finish:
            assert isinstance(event, Finish)
            if self._failovers:
                # The switch is marked in the final record's metadata; SDKs ignore
                # unknown fields.
                choice = {
                    "index": event.index,
                    "delta": {},
                    "logprobs": None,
                    "finish_reason": event.reason,
                }
                extra = orjson.dumps({"sluice": {"failover": self._failovers}})
                return self._head + b"[" + orjson.dumps(choice) + b"]," + extra[1:] + b"\n\n"
            return self._choice(event.index, {}, event.reason)
        if kind is Failover:
            assert isinstance(event, Failover)
            self._failovers.append(
                {"from": event.from_model, "to": event.to_model, "reason": event.reason}
            )
            return b""
        if kind is ReasoningDelta:
            assert isinstance(event, ReasoningDelta)
            return self._choice(event.index, {"reasoning_content": event.text}, None)
        if kind is Usage:
            assert isinstance(event, Usage)
            if not self._include_usage:
                return b""
            return self._head + b'[],"usage":' + orjson.dumps(usage_object(event)) + b"}\n\n"
        if kind is StreamError:
            assert isinstance(event, StreamError)
            return b"data: " + stream_error_body(event) + b"\n\n"
        return b""

    def _tool_call(self, event: ToolCallDelta) -> dict[str, Any]:
        return _tool_call(event, self._tool_started)

    def _choice(
        self, index: int, delta: dict[str, Any], reason: str | None, logprobs: Any = None
    ) -> bytes:
        return self._head + b"[" + orjson.dumps(_choice(index, delta, reason, logprobs)) + b"]}\n\n"


class ChunkObjects:
    """Events -> the ``chat.completion.chunk`` objects that ``ChunkEncoder`` writes, as
    dicts: for readers in the same process (the in-process ``sluice ask``), which would
    otherwise write JSON only to parse it back. ``chunk`` returns None where the encoder
    writes nothing (a failover marker; usage nobody asked for)."""

    __slots__ = ("_failovers", "_head", "_include_usage", "_tool_started")

    def __init__(
        self, completion_id: str, created: int, model: str, *, include_usage: bool
    ) -> None:
        self._head = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        self._include_usage = include_usage
        self._tool_started: set[tuple[int, int]] = set()
        self._failovers: list[dict[str, str]] = []

    def chunk(self, event: Event) -> dict[str, Any] | None:
        kind = type(event)
        if kind is TextDelta:
            assert isinstance(event, TextDelta)
            return self._with(_choice(event.index, {"content": event.text}, None, event.logprobs))
        if kind is RoleStart:
            assert isinstance(event, RoleStart)
            return self._with(_choice(event.index, _role_delta(event), None))
        if kind is ResponseMeta:
            assert isinstance(event, ResponseMeta)
            self._head = {**self._head, **meta_fields(event)}
            return None
        if kind is ToolCallDelta:
            assert isinstance(event, ToolCallDelta)
            call = _tool_call(event, self._tool_started)
            return self._with(_choice(event.index, {"tool_calls": [call]}, None))
        if kind is Finish:
            assert isinstance(event, Finish)
            chunk = self._with(_choice(event.index, {}, event.reason))
            if self._failovers:
                chunk["sluice"] = {"failover": list(self._failovers)}
            return chunk
        if kind is Failover:
            assert isinstance(event, Failover)
            self._failovers.append(
                {"from": event.from_model, "to": event.to_model, "reason": event.reason}
            )
            return None
        if kind is ReasoningDelta:
            assert isinstance(event, ReasoningDelta)
            return self._with(_choice(event.index, {"reasoning_content": event.text}, None))
        if kind is Usage:
            assert isinstance(event, Usage)
            if not self._include_usage:
                return None
            return {**self._head, "choices": [], "usage": usage_object(event)}
        if kind is StreamError:
            assert isinstance(event, StreamError)
            return stream_error_object(event)
        return None

    def _with(self, choice: dict[str, Any]) -> dict[str, Any]:
        return {**self._head, "choices": [choice]}


def _role_delta(event: RoleStart) -> dict[str, Any]:
    # null before a tool call, "" before text: what OpenAI sends, and what the SDKs'
    # stream helpers carry through to the final message.
    return {"role": event.role, "content": None if event.tool_call else ""}


def _choice(
    index: int, delta: dict[str, Any], reason: str | None, logprobs: Any = None
) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": reason}


def _tool_call(event: ToolCallDelta, started: set[tuple[int, int]]) -> dict[str, Any]:
    key = (event.index, event.call_index)
    function: dict[str, Any] = {"arguments": event.arguments}
    call: dict[str, Any] = {"index": event.call_index}
    # id, type and name belong to a call's first delta only (the SDKs concatenate
    # whatever they receive).
    if key not in started:
        started.add(key)
        if event.id is not None:
            call["id"] = event.id
        call["type"] = event.type or "function"
        if event.name is not None:
            function["name"] = event.name
    call["function"] = function
    return call


class Completion:
    """Events -> a non-streamed ``chat.completion`` object."""

    def __init__(self) -> None:
        self._text: dict[int, list[str]] = {}
        self._reasoning: dict[int, list[str]] = {}
        self._calls: dict[int, dict[int, dict[str, Any]]] = {}
        self._finish: dict[int, str] = {}
        self._roles: dict[int, str] = {}
        self.usage: Usage | None = None
        self.error: StreamError | None = None
        self.meta: dict[str, str] = {}

    def add(self, event: Event) -> None:
        if isinstance(event, TextDelta):
            self._text.setdefault(event.index, []).append(event.text)
        elif isinstance(event, RoleStart):
            self._roles[event.index] = event.role
        elif isinstance(event, ToolCallDelta):
            calls = self._calls.setdefault(event.index, {})
            call = calls.get(event.call_index)
            if call is None:
                call = calls[event.call_index] = {
                    "id": event.id,
                    "type": event.type or "function",
                    "function": {"name": event.name or "", "arguments": ""},
                }
            call["function"]["arguments"] += event.arguments
        elif isinstance(event, Finish):
            self._finish[event.index] = event.reason
        elif isinstance(event, ReasoningDelta):
            self._reasoning.setdefault(event.index, []).append(event.text)
        elif isinstance(event, Usage):
            self.usage = event
        elif isinstance(event, StreamError):
            self.error = event
        elif isinstance(event, ResponseMeta):
            self.meta.update(meta_fields(event))

    def text(self, index: int = 0) -> str:
        return "".join(self._text.get(index, ()))

    def finish_reason(self, index: int = 0) -> str | None:
        return self._finish.get(index)

    def to_object(self, completion_id: str, created: int, model: str, n: int) -> dict[str, Any]:
        choices = []
        for index in range(n):
            message: dict[str, Any] = {
                "role": self._roles.get(index, "assistant"),
                "content": self.text(index) if index in self._text else None,
                "refusal": None,
            }
            if index in self._reasoning:
                message["reasoning_content"] = "".join(self._reasoning[index])
            calls = self._calls.get(index)
            if calls:
                message["tool_calls"] = [calls[key] for key in sorted(calls)]
            if message["content"] is None and not calls:
                message["content"] = ""
            choices.append(
                {
                    "index": index,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": self._finish.get(index, "stop"),
                }
            )
        result: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": choices,
        }
        if self.usage is not None:
            result["usage"] = usage_object(self.usage)
        result.update(self.meta)
        return result
