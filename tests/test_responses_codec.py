"""The Responses API's pure codecs: request -> chat completions, events -> records."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sluice.errors import RequestError
from sluice.events import Event, Finish, RoleStart, StreamError, TextDelta, ToolCallDelta, Usage
from sluice.wire.responses_events import ResponseWriter, response_object, stream_id_of
from sluice.wire.responses_request import (
    DEFAULT_ECHO,
    output_messages,
    parse_responses_request,
)


def parse(**body: Any) -> Any:
    return parse_responses_request(json.dumps({"model": "m", **body}).encode())


def test_text_input_and_instructions_become_chat_messages() -> None:
    request = parse(input="hi", instructions="Be brief.", max_output_tokens=50, temperature=0)
    body = request.chat_body([{"role": "user", "content": "before"}])
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "before"},
        {"role": "user", "content": "hi"},
    ]
    assert body["max_completion_tokens"] == 50
    assert body["temperature"] == 0
    assert "input" not in body and "instructions" not in body and "max_output_tokens" not in body
    # The next turn inherits the conversation, not the instructions.
    assert request.input_messages == [{"role": "user", "content": "hi"}]


def test_items_become_messages_and_consecutive_calls_one_assistant_turn() -> None:
    request = parse(
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
            {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "w", "arguments": '{"a":1}'},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "rain"}],
            },
            {"type": "reasoning", "id": "r", "summary": []},
        ]
    )
    user, assistant, first, second = request.input_messages
    assert user == {"role": "user", "content": [{"type": "text", "text": "weather?"}]}
    assert [c["id"] for c in assistant["tool_calls"]] == ["c1", "c2"]
    assert assistant["content"] is None
    assert first == {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
    assert second["content"] == "rain"


def test_tools_choice_and_text_format_translate() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    request = parse(
        input="x",
        tools=[{"type": "function", "name": "f", "parameters": schema, "strict": True}],
        tool_choice={"type": "function", "name": "f"},
        text={"format": {"type": "json_schema", "name": "A", "schema": schema, "strict": True}},
        reasoning={"effort": "low"},
        sim={"key": "k"},
    )
    body = request.chat_body([])
    assert body["tools"] == [
        {"type": "function", "function": {"name": "f", "parameters": schema, "strict": True}}
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "A", "schema": schema, "strict": True},
    }
    assert body["reasoning_effort"] == "low"
    assert body["sim"] == {"key": "k"}  # unknown fields pass through, as on chat
    assert request.echo["tools"][0]["name"] == "f"  # the Response repeats the Responses form
    assert (
        parse(input="x", text={"format": {"type": "text"}}).chat_body([]).get("response_format")
        is None
    )


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": [{"type": "message", "role": "user", "content": 3}]}, "input[0].content"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "input[0].content[0].type",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_text"}]}]},
            "input[0].content[0].text",
        ),
        ({"input": [{"type": "function_call", "call_id": "c", "name": "n"}]}, "input[0].arguments"),
        ({"input": "x", "tool_choice": {"type": "file_search"}}, "tool_choice"),
        ({"input": "x", "stream": "yes"}, "stream"),
        ({"input": "x", "metadata": {"a": 1}}, "metadata.a"),
    ],
)
def test_errors_name_the_responses_parameter(body: dict[str, Any], param: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse(**body)
    assert caught.value.param == param


def answer(*reasons: str) -> list[Event]:
    events: list[Event] = [RoleStart(), TextDelta("Hel"), TextDelta("lo")]
    events.append(ToolCallDelta(0, "", id="call_1", name="f", type="function"))
    events += [ToolCallDelta(0, '{"a":'), ToolCallDelta(0, "1}")]
    events += [Finish(reason) for reason in reasons]
    events.append(Usage(3, 4, 7, {"completion_tokens_details": {"reasoning_tokens": 2}}))
    return events


def records(events: list[Event]) -> list[dict[str, Any]]:
    writer = ResponseWriter("resp_abc", 1, "m", DEFAULT_ECHO)
    out = writer.opening()
    for event in events:
        out += writer.feed([event])
    closing = writer.closing()
    return out + ([closing] if closing else [])


def test_records_are_numbered_and_items_open_and_close_in_order() -> None:
    out = records(answer("tool_calls"))
    assert [r["sequence_number"] for r in out] == list(range(len(out)))
    assert [r["type"] for r in out] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = out[-1]["response"]
    message, call = final["output"]
    assert message["id"] == "msg_abc_0" and message["content"][0]["text"] == "Hello"
    assert call == {
        "id": "fc_abc_1",
        "type": "function_call",
        "call_id": "call_1",
        "name": "f",
        "arguments": '{"a":1}',
        "status": "completed",
    }
    assert final["usage"]["output_tokens_details"] == {"reasoning_tokens": 2}
    assert final["status"] == "completed"


def test_a_replay_writes_the_same_records() -> None:
    events = answer("stop")
    assert json.dumps(records(events)) == json.dumps(records(events))
    whole = ResponseWriter("resp_abc", 1, "m", DEFAULT_ECHO)
    batched = whole.opening() + whole.feed(events)
    assert batched == records(events)[:-1]


@pytest.mark.parametrize(
    ("reason", "status", "details", "last"),
    [
        ("length", "incomplete", {"reason": "max_output_tokens"}, "response.incomplete"),
        ("content_filter", "incomplete", {"reason": "content_filter"}, "response.incomplete"),
        ("incomplete", "cancelled", None, "response.incomplete"),
    ],
)
def test_unfinished_answers(reason: str, status: str, details: Any, last: str) -> None:
    out = records(answer(reason))
    assert out[-1]["type"] == last
    assert out[-1]["response"]["status"] == status
    assert out[-1]["response"]["incomplete_details"] == details
    # The message finished before the tool call began; the call was cut short.
    message, call = out[-1]["response"]["output"]
    assert (message["status"], call["status"]) == ("completed", "incomplete")


def test_a_failure_is_response_failed_and_nothing_after() -> None:
    events: list[Event] = [
        RoleStart(),
        TextDelta("x"),
        StreamError("server_error", "boom", "upstream_error"),
    ]
    out = records(events)
    assert out[-1]["type"] == "response.failed"
    assert out[-1]["response"]["error"] == {
        "code": "server_error",  # a code the SDKs know; sluice's own is the type
        "message": "boom",
        "param": None,
        "type": "upstream_error",
    }
    body = response_object("resp_abc", 1, "m", DEFAULT_ECHO, events)
    assert body["status"] == "failed"


def test_the_output_goes_back_as_the_next_turns_messages() -> None:
    body = response_object("resp_abc", 1, "m", DEFAULT_ECHO, answer("tool_calls"))
    assert output_messages(body["output"]) == [
        {"role": "assistant", "content": "Hello"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "f", "arguments": '{"a":1}'},
                }
            ],
        },
    ]


@pytest.mark.parametrize(
    ("given", "stream"),
    [
        ("resp_abc123", "abc123"),
        ("abc", None),
        ("resp_", None),
        ("resp_../x", None),
        ("resp_" + "a" * 90, None),
    ],
)
def test_response_ids(given: str, stream: str | None) -> None:
    assert stream_id_of(given) == stream


def test_interleaved_tool_call_pieces_all_reach_the_response() -> None:
    events: list[Event] = [
        RoleStart(tool_call=True),
        ToolCallDelta(0, '{"a":', id="c0", name="f"),
        ToolCallDelta(1, '{"b":', id="c1", name="g"),
        ToolCallDelta(0, "1}"),
        ToolCallDelta(1, "2}"),
        Finish("tool_calls"),
    ]
    body = response_object("resp_abc", 1, "m", DEFAULT_ECHO, events)
    assert [json.loads(item["arguments"]) for item in body["output"]] == [{"a": 1}, {"b": 2}]


def test_an_upstream_call_without_a_name_still_makes_history() -> None:
    events: list[Event] = [
        RoleStart(tool_call=True),
        ToolCallDelta(0, "{}", id="c0"),
        Finish("tool_calls"),
    ]
    body = response_object("resp_abc", 1, "m", DEFAULT_ECHO, events)
    [message] = output_messages(body["output"])
    assert message["tool_calls"][0]["function"] == {"name": "", "arguments": "{}"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "a\u0000b"}, "input"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_text", "text": "\u0000"}]}]},
            "input[0].content[0].text",
        ),
        ({"input": "x", "instructions": "\u0000"}, "instructions"),
        ({"input": "x", "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"input": "x", "metadata": {"k": "v" * 513}}, "metadata.k"),
    ],
)
def test_what_a_stored_response_keeps_must_be_storable(body: dict[str, Any], param: str) -> None:
    raw = json.dumps({"model": "m", **body}).encode()
    with pytest.raises(RequestError) as caught:
        parse_responses_request(raw)
    assert caught.value.param == param


def test_unstored_input_may_hold_any_text() -> None:
    raw = json.dumps({"model": "m", "input": "a\u0000b", "store": False}).encode()
    assert parse_responses_request(raw).input_messages[0]["content"] == "a\x00b"
