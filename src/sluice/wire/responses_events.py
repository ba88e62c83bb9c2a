"""Events -> the Responses API: streamed semantic events and the Response object.

One ``ResponseWriter`` per response turns the stream's events (choice 0) into the
records OpenAI's ``/v1/responses`` streams — ``response.created``,
``response.output_item.added``, ``response.content_part.added``,
``response.output_text.delta``, ``response.function_call_arguments.delta``, the matching
``.done`` records, then ``response.completed`` / ``response.incomplete`` /
``response.failed`` — each with its ``sequence_number`` (from 0). The same writer builds
the Response object a non-streamed request gets, so the two never disagree.

Everything it writes follows from the events, the response id, its creation time and the
request's settings (``echo``): a replay from the first event writes the same records
byte for byte, which is what lets a client resume at a sequence number.

::

    item ids:  msg_<response>_<output index>, fc_<response>_<output index>
    status:    stop / tool_calls -> completed; length -> incomplete (max_output_tokens);
               content_filter -> incomplete (content_filter); a stopped answer ->
               cancelled; an error -> failed, with the error
"""

from __future__ import annotations

from typing import Any

import orjson

from sluice.events import (
    Event,
    Finish,
    ResponseMeta,
    StreamError,
    TextDelta,
    ToolCallDelta,
    Usage,
)

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_id(stream_id: str) -> str:
    return f"resp_{stream_id}"


def stream_id_of(response: str) -> str | None:
    """The stream id inside a response id; None if it is not one of ours."""
    if not response.startswith("resp_") or len(response) > 80:
        return None
    stream = response[5:]
    return stream if stream.isascii() and stream.isalnum() else None


class _Item:
    __slots__ = ("call_id", "id", "kind", "name", "status", "text")

    def __init__(self, kind: str, item_id: str, call_id: str = "", name: str = "") -> None:
        self.kind = kind
        self.id = item_id
        self.call_id = call_id
        self.name = name
        self.text: list[str] = []
        #: Set when the item is closed (None while it is open).
        self.status: str | None = None

    def as_object(self, status: str) -> dict[str, Any]:
        text = "".join(self.text)
        if self.kind == "message":
            content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
            return {
                "id": self.id,
                "type": "message",
                "role": "assistant",
                "status": status,
                "content": content if status != "in_progress" or text else [],
            }
        return {
            "id": self.id,
            "type": "function_call",
            "call_id": self.call_id,
            "name": self.name,
            "arguments": text,
            "status": status,
        }


class ResponseWriter:
    """The records and the Response object of one response, from its events."""

    __slots__ = (
        "_calls",
        "_echo",
        "_error",
        "_finish",
        "_id",
        "_items",
        "_model",
        "_open",
        "_service_tier",
        "_usage",
        "created",
        "seq",
    )

    def __init__(self, response: str, created: int, model: str, echo: dict[str, Any]) -> None:
        self._id = response
        self.created = created
        self._model = model
        self._echo = echo
        self._items: list[_Item] = []
        #: Output index of each tool call (by its chat call index).
        self._calls: dict[int, int] = {}
        self._open: int | None = None
        self._finish: str | None = None
        self._usage: Usage | None = None
        self._error: StreamError | None = None
        self._service_tier: str | None = None
        #: The next record's sequence number.
        self.seq = 0

    # -- records ------------------------------------------------------------

    def opening(self) -> list[dict[str, Any]]:
        snapshot = self.response("in_progress")
        return [
            self._record("response.created", response=snapshot),
            self._record("response.in_progress", response=snapshot),
        ]

    def feed(self, events: list[Event]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for event in events:
            kind = type(event)
            if kind is TextDelta:
                assert isinstance(event, TextDelta)
                if event.index == 0:
                    self._text(event, out)
            elif kind is ToolCallDelta:
                assert isinstance(event, ToolCallDelta)
                if event.index == 0:
                    self._tool_call(event, out)
            elif kind is Finish:
                assert isinstance(event, Finish)
                if event.index == 0:
                    whole = event.reason in ("stop", "tool_calls")
                    self._close(out, "completed" if whole else "incomplete")
                    self._finish = event.reason
            elif kind is Usage:
                assert isinstance(event, Usage)
                self._usage = event
            elif kind is StreamError:
                assert isinstance(event, StreamError)
                self._error = event
                out.append(self._record("response.failed", response=self.response()))
            elif kind is ResponseMeta:
                assert isinstance(event, ResponseMeta)
                self._service_tier = event.service_tier
            # A choice's start, reasoning and failover notes have no record of their own.
        return out

    def closing(self) -> dict[str, Any] | None:
        """The last record of an answer that did not fail."""
        if self._error is not None:
            return None
        response = self.response()
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        return self._record(kind, response=response)

    def interruption(self, error: StreamError) -> dict[str, Any]:
        """An ``error`` record that is not one of the stream's: it repeats the last
        sequence number, so resuming from it misses nothing."""
        return {
            "type": "error",
            "code": error.code,
            "message": error.message,
            "param": error.param,
            "sequence_number": max(self.seq - 1, 0),
        }

    # -- the Response object ------------------------------------------------

    def status(self) -> str:
        if self._error is not None:
            return "failed"
        if self._finish is None:
            return "in_progress"
        if self._finish == "incomplete":
            return "cancelled"
        return "incomplete" if self._finish in _INCOMPLETE else "completed"

    def response(self, status: str | None = None) -> dict[str, Any]:
        status = status or self.status()
        # An item still open ends with the response: in progress, or cut short.
        still_open = "in_progress" if status == "in_progress" else "incomplete"
        output = [item.as_object(item.status or still_open) for item in self._items]
        error = self._error
        body: dict[str, Any] = {
            "id": self._id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "error": None if error is None else response_error(error),
            "incomplete_details": (
                {"reason": _INCOMPLETE[self._finish]}
                if status == "incomplete" and self._finish in _INCOMPLETE
                else None
            ),
            "model": self._model,
            "output": output,
            **self._echo,
            "service_tier": self._service_tier,
            "usage": None if status == "in_progress" else usage_object(self._usage),
        }
        return body

    # -- internals ----------------------------------------------------------

    def _record(self, kind: str, **fields: Any) -> dict[str, Any]:
        record = {"type": kind, **fields, "sequence_number": self.seq}
        self.seq += 1
        return record

    def _text(self, event: TextDelta, out: list[dict[str, Any]]) -> None:
        current = self._current("message")
        if current is None:
            current = self._add(_Item("message", self._item_id("msg")), out)
            out.append(
                self._record(
                    "response.content_part.added",
                    item_id=current.id,
                    output_index=self._open,
                    content_index=0,
                    part={"type": "output_text", "text": "", "annotations": [], "logprobs": []},
                )
            )
        current.text.append(event.text)
        logprobs = event.logprobs.get("content") if isinstance(event.logprobs, dict) else None
        out.append(
            self._record(
                "response.output_text.delta",
                item_id=current.id,
                output_index=self._open,
                content_index=0,
                delta=event.text,
                logprobs=logprobs or [],
            )
        )

    def _tool_call(self, event: ToolCallDelta, out: list[dict[str, Any]]) -> None:
        position = self._calls.get(event.call_index)
        if position is None:
            item = _Item(
                "function_call",
                self._item_id("fc"),
                call_id=event.id or f"call_{len(self._items)}",
                name=event.name or "",
            )
            self._add(item, out)
            position = self._calls[event.call_index] = len(self._items) - 1
        if not event.arguments:
            return
        item = self._items[position]
        item.text.append(event.arguments)  # the whole call, in the Response, always
        if position == self._open:
            # (A late piece of a call already closed is not streamed: its done record
            # is out. Upstreams that interleave calls still get them whole at the end.)
            out.append(
                self._record(
                    "response.function_call_arguments.delta",
                    item_id=item.id,
                    output_index=position,
                    delta=event.arguments,
                )
            )

    def _current(self, kind: str) -> _Item | None:
        if self._open is None:
            return None
        item = self._items[self._open]
        return item if item.kind == kind else None

    def _item_id(self, prefix: str) -> str:
        return f"{prefix}_{self._id[5:]}_{len(self._items)}"

    def _add(self, item: _Item, out: list[dict[str, Any]]) -> _Item:
        self._close(out, "completed")
        self._items.append(item)
        self._open = len(self._items) - 1
        out.append(
            self._record(
                "response.output_item.added",
                output_index=self._open,
                item=item.as_object("in_progress"),
            )
        )
        return item

    def _close(self, out: list[dict[str, Any]], status: str) -> None:
        if self._open is None:
            return
        position, item = self._open, self._items[self._open]
        self._open = None
        item.status = status
        text = "".join(item.text)
        if item.kind == "message":
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            common = {"item_id": item.id, "output_index": position, "content_index": 0}
            out.append(self._record("response.output_text.done", **common, text=text, logprobs=[]))
            out.append(self._record("response.content_part.done", **common, part=part))
        else:
            out.append(
                self._record(
                    "response.function_call_arguments.done",
                    item_id=item.id,
                    output_index=position,
                    name=item.name,
                    arguments=text,
                )
            )
        out.append(
            self._record(
                "response.output_item.done", output_index=position, item=item.as_object(status)
            )
        )


def response_error(error: StreamError) -> dict[str, Any]:
    """A failure as a Response states it: ``code`` one the SDKs know (``server_error``,
    ``rate_limit_exceeded``, ``invalid_prompt``), sluice's own code as ``type``."""
    if error.status == 429:
        code = "rate_limit_exceeded"
    elif 400 <= error.status < 500:
        code = "invalid_prompt"
    else:
        code = "server_error"
    return {"code": code, "message": error.message, "param": error.param, "type": error.code}


def usage_object(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    details = usage.details
    prompt = details.get("prompt_tokens_details") or {}
    completion = details.get("completion_tokens_details") or {}
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": prompt.get("cached_tokens", 0),
            "cache_write_tokens": prompt.get("cache_write_tokens", 0),
        },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": completion.get("reasoning_tokens", 0)},
        "total_tokens": usage.total_tokens,
    }


def sse_record(record: dict[str, Any], *, numbered: bool = False) -> bytes:
    """One record as OpenAI streams it: ``event:`` its type, ``data:`` the JSON."""
    head = b"event: " + str(record["type"]).encode() + b"\n"
    if numbered:
        head = b"id: " + str(record["sequence_number"]).encode() + b"\n" + head
    return head + b"data: " + orjson.dumps(record) + b"\n\n"


def response_object(
    response: str, created: int, model: str, echo: dict[str, Any], events: list[Event]
) -> dict[str, Any]:
    """The whole Response of a finished stream (a non-streamed request, ``GET``)."""
    writer = ResponseWriter(response, created, model, echo)
    writer.feed(events)
    return writer.response()


__all__ = [
    "ResponseWriter",
    "response_id",
    "response_object",
    "sse_record",
    "stream_id_of",
    "usage_object",
]
