"""The Anthropic Messages codecs, pure: request bodies both ways, events -> Messages
records (checked against the official SDK's own accumulator), Messages records ->
events, and the error shapes."""

from __future__ import annotations

import itertools
import json
from typing import Any, cast

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import RawMessageStreamEvent
from anthropic.types.message import Message
from hypothesis import given
from hypothesis import strategies as st

from sluice.errors import RequestError
from sluice.events import (
    Event,
    Finish,
    ReasoningDelta,
    RoleStart,
    StreamError,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from sluice.wire.anthropic_errors import error_type, reshape, status_of, upstream_message
from sluice.wire.anthropic_events import MessageRecords, MessagesSSE, message_object, sse
from sluice.wire.anthropic_request import messages_to_chat, parse_messages_request
from sluice.wire.anthropic_stream import MessagesDecoder
from sluice.wire.anthropic_upstream import chat_to_messages
from sluice.wire.sse import SSEDecoder

WEATHER = {
    "name": "get_weather",
    "description": "Current weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}

#: A conversation with everything the two formats share: a system prompt, a tool
#: call and its result, a follow-up question.
MESSAGES_BODY: dict[str, Any] = {
    "model": "claude",
    "max_tokens": 300,
    "system": "Be brief.",
    "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C"},
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ],
    "stop_sequences": ["END"],
    "temperature": 0.5,
    "top_k": 40,
    "tools": [WEATHER],
    "tool_choice": {"type": "tool", "name": "get_weather"},
    "metadata": {"user_id": "u-1"},
    "stream": True,
}


def test_messages_body_becomes_the_chat_body_that_asks_the_same() -> None:
    chat = messages_to_chat(MESSAGES_BODY)
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        # The tool's result comes right after the call, before the rest of the turn.
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18 C"},
        {"role": "user", "content": "And tomorrow?"},
    ]
    assert chat["max_tokens"] == 300 and chat["stop"] == ["END"]
    assert chat["temperature"] == 0.5 and chat["top_k"] == 40
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER["input_schema"],
                "description": "Current weather",
            },
        }
    ]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert chat["user"] == "u-1" and chat["stream"] is True
    request = parse_messages_request(json.dumps(MESSAGES_BODY).encode())
    assert request.model == "claude" and request.stream and request.n == 1


def test_chat_body_goes_back_to_the_same_messages_body() -> None:
    chat = messages_to_chat(MESSAGES_BODY)
    back = chat_to_messages(chat, model="claude")
    assert back == MESSAGES_BODY | {
        # One text block is one text block either way; strings become blocks.
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
            MESSAGES_BODY["messages"][1],
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C"},
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
    }


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        (
            {"type": "tool", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
def test_tool_choice_maps_both_ways(given: dict[str, Any], expected: Any) -> None:
    body = {**MESSAGES_BODY, "tool_choice": given}
    chat = messages_to_chat(body)
    assert chat["tool_choice"] == expected
    assert chat_to_messages(chat, model="m")["tool_choice"] == given


def test_system_blocks_images_and_unknown_fields() -> None:
    chat = messages_to_chat(
        {
            "model": "m",
            "max_tokens": 5,
            "system": [{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}],
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
                        },
                    ],
                },
                {
                    "role": "assistant",
                    "content": [{"type": "thinking", "thinking": "hm", "signature": "s"}],
                },
            ],
            "tools": [WEATHER],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
            "sim": {"key": "k"},
        }
    )
    assert chat["messages"][0] == {"role": "system", "content": "One.\nTwo."}
    assert chat["messages"][1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBO"},
    }
    assert chat["messages"][2] == {"role": "assistant", "content": ""}  # thinking dropped
    assert chat["sim"] == {"key": "k"} and chat["parallel_tool_calls"] is False
    back = chat_to_messages(chat, model="m")
    assert back["messages"][0]["content"][1]["source"] == {
        "type": "base64",
        "media_type": "image/png",
        "data": "iVBO",
    }
    assert back["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"temperature": 1.5}, "temperature"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "document"}]}]},
            "messages[0].content[0].type",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0]"),
        ({"tool_choice": {"type": "tool"}}, "tool_choice.name"),
        ({"stop_sequences": ["a", "b", "c", "d", "e"]}, "stop_sequences"),
    ],
)
def test_bad_bodies_name_the_field(change: dict[str, Any], param: str) -> None:
    body = {**MESSAGES_BODY, **change}
    body = {k: v for k, v in body.items() if v is not None}
    with pytest.raises(RequestError) as caught:
        messages_to_chat(body)
    assert caught.value.status == 400
    assert caught.value.param == param


def test_openai_only_fields_are_dropped_and_temperature_clamped() -> None:
    chat = {
        "model": "x",
        "messages": [
            {"role": "developer", "content": "Rules."},
            {"role": "user", "content": "hi"},
        ],
        "seed": 3,
        "n": 1,
        "stream_options": {"include_usage": True},
        "frequency_penalty": 0.1,
        "temperature": 1.7,
        "max_completion_tokens": 9,
        "stop": "STOP",
        "vendor_thing": 1,
    }
    body = chat_to_messages(chat, model="claude-up")
    assert body == {
        "model": "claude-up",
        "system": "Rules.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "max_tokens": 9,
        "stop_sequences": ["STOP"],
        "temperature": 1.0,
        "stream": True,
        "vendor_thing": 1,
    }


# -- events -> records -----------------------------------------------------------------

ANSWER: list[Event] = [
    RoleStart(0),
    ReasoningDelta("Think."),
    TextDelta("Hello"),
    TextDelta(" there"),
    ToolCallDelta(0, "", id="call_a", name="get_weather", type="function"),
    ToolCallDelta(0, '{"city": '),
    ToolCallDelta(0, '"Paris"}'),
    ToolCallDelta(1, '{"city": "Rome"}', id="call_b", name="get_weather", type="function"),
    Finish("tool_calls"),
    Usage(12, 7, 19),
]


def records_of(events: list[Event]) -> list[tuple[str, dict[str, Any]]]:
    writer = MessageRecords("msg_1", "claude")
    out: list[tuple[str, dict[str, Any]]] = []
    writer.records(events, out)
    return out + writer.end(next(e for e in events if isinstance(e, Usage)))


def sdk_accumulate(records: list[tuple[str, dict[str, Any]]]) -> Message:
    """What the official SDK's stream helper builds from these records."""
    snapshot = None
    buffers: dict[int, bytes] = {}
    for _, data in records:
        snapshot = accumulate_event(
            event=cast(RawMessageStreamEvent, data), current_snapshot=snapshot, json_bufs=buffers
        )
    assert snapshot is not None
    return snapshot


def test_records_follow_the_messages_stream_grammar() -> None:
    names = [name for name, _ in records_of(ANSWER)]
    assert names == [
        "message_start",
        "content_block_start",  # thinking
        "content_block_delta",
        "content_block_stop",
        "content_block_start",  # text
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",  # first call
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",  # second call
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_the_sdk_accumulates_the_records_into_our_message_object() -> None:
    ours = message_object(ANSWER, "msg_1", "claude")
    theirs = sdk_accumulate(records_of(ANSWER))
    assert theirs.stop_reason == "tool_use" == ours["stop_reason"]
    assert theirs.usage.input_tokens == 12 and theirs.usage.output_tokens == 7
    assert [block.type for block in theirs.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert theirs.content[1].text == "Hello there"  # type: ignore[union-attr]
    assert theirs.content[2].input == {"city": "Paris"}  # type: ignore[union-attr]
    assert theirs.content[3].id == "call_b"  # type: ignore[union-attr]
    # The non-streamed object is what the SDK builds from the stream.
    assert Message.model_validate(ours).model_dump() == theirs.model_dump()


@pytest.mark.parametrize(
    ("reason", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("incomplete", "end_turn"),
    ],
)
def test_finish_reasons_become_stop_reasons(reason: str, stop_reason: str) -> None:
    message = message_object([RoleStart(0), TextDelta("x"), Finish(reason)], "m", "c")
    assert message["stop_reason"] == stop_reason
    assert message["usage"] == {"input_tokens": 0, "output_tokens": 0}


def test_an_error_is_an_error_record_and_no_message_stop() -> None:
    sse = MessagesSSE("msg_1", "claude")
    body = sse.encode(
        [RoleStart(0), TextDelta("Hi"), StreamError("server_error", "boom", status=502)]
    )
    events = SSEDecoder().feed(body)
    assert [e.event for e in events][-1] == "error"
    assert json.loads(events[-1].data) == {
        "type": "error",
        "error": {"type": "api_error", "message": "boom"},
    }
    # An error first (the status was already sent): no message_start before it.
    first = MessagesSSE("msg_2", "claude").encode([StreamError("x", "busy", status=503)])
    assert [e.event for e in SSEDecoder().feed(first)] == ["error"]


@given(
    st.lists(
        st.lists(st.sampled_from(["a", " b", "é\n", '"q"', "", "think"]), min_size=1, max_size=4),
        max_size=8,
    )
)
def test_the_text_fast_path_writes_the_same_bytes(batches: list[list[str]]) -> None:
    # "think" stands for reasoning: the fast path must step aside for other blocks.
    def event(text: str) -> Event:
        return ReasoningDelta(text) if text == "think" else TextDelta(text)

    fast = MessagesSSE("msg_1", "claude")
    slow = MessageRecords("msg_1", "claude")
    got = fast.encode([RoleStart(0)])
    expected: list[tuple[str, dict[str, Any]]] = []
    slow.records([RoleStart(0)], expected)
    for batch in batches:
        events = [event(text) for text in batch]
        got += fast.encode(events)
        slow.records(events, expected)
    assert got == b"".join(sse(record) for record in expected)


def test_resumed_records_continue_the_numbering() -> None:
    whole = MessagesSSE("msg_1", "claude", numbered=True)
    full = SSEDecoder().feed(whole.encode(ANSWER) + whole.end(Usage(12, 7, 19)))
    resumed = MessagesSSE("msg_1", "claude", numbered=True)
    resumed.skip = 5
    tail = SSEDecoder().feed(
        resumed.encode(ANSWER[:4]) + resumed.encode(ANSWER[4:]) + resumed.end(Usage(12, 7, 19))
    )
    assert [e.id for e in full] == [str(n) for n in range(1, len(full) + 1)]
    assert [(e.id, e.event, e.data) for e in tail] == [(e.id, e.event, e.data) for e in full[5:]]


# -- records -> events -----------------------------------------------------------------


def decode(stream: bytes, pieces: list[int] | None = None) -> tuple[list[Event], MessagesDecoder]:
    sse = SSEDecoder()
    decoder = MessagesDecoder()
    out: list[Event] = []
    cuts = sorted({0, len(stream), *(p % (len(stream) + 1) for p in pieces or [])})
    for start, end in itertools.pairwise(cuts):
        for record in sse.feed(stream[start:end]):
            if decoder.feed(record.event, json.loads(record.data), out):
                return out, decoder
    return out, decoder


def encoded(events: list[Event]) -> bytes:
    sse = MessagesSSE("msg_1", "claude")
    usage = next((e for e in events if isinstance(e, Usage)), None)
    return sse.encode(events) + sse.end(usage)


def test_records_decode_back_to_the_events() -> None:
    events, decoder = decode(encoded(ANSWER))
    assert events == [
        RoleStart(0),
        ReasoningDelta("Think."),
        TextDelta("Hello"),
        TextDelta(" there"),
        ToolCallDelta(0, "", id="call_a", name="get_weather", type="function"),
        ToolCallDelta(0, '{"city": '),
        ToolCallDelta(0, '"Paris"}'),
        ToolCallDelta(1, "", id="call_b", name="get_weather", type="function"),
        ToolCallDelta(1, '{"city": "Rome"}'),
        Finish("tool_calls"),
        Usage(12, 7, 19),
    ]
    assert decoder.ended and decoder.error is None


def test_a_tool_call_first_starts_the_choice_as_one() -> None:
    events, _ = decode(
        encoded([RoleStart(0), ToolCallDelta(0, "{}", id="c", name="f"), Finish("tool_calls")])
    )
    assert events[0] == RoleStart(0, tool_call=True)


def test_upstream_usage_with_cache_counts() -> None:
    decoder = MessagesDecoder()
    out: list[Event] = []
    start = {
        "id": "m",
        "usage": {"input_tokens": 10, "cache_read_input_tokens": 90, "output_tokens": 1},
    }
    decoder.feed("message_start", {"type": "message_start", "message": start}, out)
    delta = {"stop_reason": "max_tokens", "stop_sequence": None}
    decoder.feed(
        "message_delta",
        {"type": "message_delta", "delta": delta, "usage": {"output_tokens": 30}},
        out,
    )
    assert out == [
        RoleStart(0),
        Finish("length"),
        Usage(100, 30, 130, {"prompt_tokens_details": {"cached_tokens": 90}}),
    ]


def test_an_error_record_ends_the_stream_with_its_type() -> None:
    decoder = MessagesDecoder()
    out: list[Event] = []
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert decoder.feed("error", body, out) is True
    assert decoder.error == ("overloaded_error", "Overloaded")
    assert status_of("overloaded_error") == 529 and status_of("nonsense") == 500


@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_any_split_of_the_bytes_gives_the_same_events(cuts: list[int]) -> None:
    stream = encoded(ANSWER)
    assert decode(stream, cuts)[0] == decode(stream)[0]


# -- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (529, "overloaded_error"),
        (405, "invalid_request_error"),
    ],
)
def test_statuses_have_their_anthropic_types(status: int, kind: str) -> None:
    assert error_type(status) == kind
    openai = {
        "error": {
            "message": "nope",
            "type": "x",
            "param": None,
            "code": None,
            "request_id": "req_1",
        }
    }
    assert json.loads(reshape(status, json.dumps(openai).encode())) == {
        "type": "error",
        "error": {"type": kind, "message": "nope"},
        "request_id": "req_1",
    }


def test_bodies_that_are_not_errors_stay_as_they_are() -> None:
    assert reshape(400, b"not json") == b"not json"
    assert reshape(400, b'{"detail": 1}') == b'{"detail": 1}'
    assert upstream_message(b'{"type":"error","error":{"type":"x","message":"why"}}') == "why"
    assert upstream_message(b"<html>") == "<html>"
