"""``ChunkObjects`` (chunk dicts for readers in this process, like the in-process
``sluice ask``) gives exactly the objects ``ChunkEncoder`` writes as bytes, for any
sequence of events: the terminal never sees a chunk the HTTP API would not send."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

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
from sluice.wire.openai_chunks import ChunkEncoder, ChunkObjects, decode_chunk

indexes = st.integers(0, 2)
text = st.text(max_size=12)
names = st.none() | st.sampled_from(["get_weather", "search"])

events: st.SearchStrategy[Event] = st.one_of(
    st.builds(TextDelta, text, indexes, st.none() | st.just({"content": []})),
    st.builds(RoleStart, indexes, st.just("assistant"), st.booleans()),
    st.builds(
        ResponseMeta,
        st.none() | st.sampled_from(["fp_1", "fp_2"]),
        st.none() | st.sampled_from(["default", "flex"]),
    ),
    st.builds(ReasoningDelta, text, indexes),
    st.builds(
        ToolCallDelta,
        call_index=st.integers(0, 1),
        arguments=text,
        id=st.none() | st.just("call_1"),
        name=names,
        index=indexes,
        type=st.none() | st.just("function"),
    ),
    st.builds(Finish, st.sampled_from(["stop", "length", "tool_calls", "incomplete"]), indexes),
    st.builds(Failover, st.just("a"), st.just("b"), st.just("upstream timeout")),
    st.builds(
        Usage,
        st.integers(0, 99),
        st.integers(0, 99),
        st.integers(0, 199),
        st.just({}) | st.just({"completion_tokens_details": {"reasoning_tokens": 3}}),
    ),
    st.builds(
        StreamError,
        st.just("rate_limit_error"),
        text,
        st.none() | st.just("upstream_rate_limited"),
        st.just(429),
    ),
)


def _decoded(record: bytes) -> dict[str, Any] | None:
    if not record:
        return None
    assert record.startswith(b"data: ") and record.endswith(b"\n\n")
    decoded: dict[str, Any] = orjson.loads(record[len(b"data: ") : -2])
    return decoded


@given(st.lists(events, max_size=30), st.booleans())
def test_the_same_chunks_as_the_encoder_writes(stream: list[Event], include_usage: bool) -> None:
    encoder = ChunkEncoder("chatcmpl-x", 1700000000, "sim", include_usage=include_usage)
    objects = ChunkObjects("chatcmpl-x", 1700000000, "sim", include_usage=include_usage)
    for event in stream:
        assert objects.chunk(event) == _decoded(encoder.encode_one(event)), event


def test_a_tool_call_names_itself_once_and_a_failover_marks_the_end() -> None:
    objects = ChunkObjects("chatcmpl-x", 1, "m", include_usage=False)
    first = objects.chunk(ToolCallDelta(0, '{"ci', id="call_1", name="get_weather"))
    second = objects.chunk(ToolCallDelta(0, 'ty":"Kyoto"}'))
    assert first is not None and second is not None
    assert first["choices"][0]["delta"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert "name" not in second["choices"][0]["delta"]["tool_calls"][0]["function"]
    assert objects.chunk(Failover("a", "b", "dropped")) is None
    assert objects.chunk(Usage(1, 2, 3)) is None, "usage only when asked for"
    end = objects.chunk(Finish("stop"))
    assert end is not None
    assert end["sluice"] == {"failover": [{"from": "a", "to": "b", "reason": "dropped"}]}


def test_a_tool_call_opens_with_null_content_and_response_fields_ride_on_every_chunk() -> None:
    encoder = ChunkEncoder("chatcmpl-x", 1, "m", include_usage=True)
    assert encoder.encode_one(ResponseMeta("fp_abc", "flex")) == b"", "no record of its own"
    records = [
        _decoded(encoder.encode_one(event))
        for event in (
            RoleStart(0, tool_call=True),
            ToolCallDelta(0, "{}", id="call_1", name="f"),
            Finish("tool_calls"),
            Usage(1, 2, 3),
        )
    ]
    assert records[0] is not None
    assert records[0]["choices"][0]["delta"] == {"role": "assistant", "content": None}
    for record in records:
        assert record is not None
        assert record["system_fingerprint"] == "fp_abc" and record["service_tier"] == "flex"
    text = _decoded(ChunkEncoder("c", 1, "m", include_usage=False).encode_one(RoleStart()))
    assert text is not None and text["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "system_fingerprint" not in text, "absent unless the upstream sent it"


def test_decoding_reads_what_openai_sends_first() -> None:
    out: list[Event] = []
    chunk = {
        "id": "chatcmpl-1",
        "system_fingerprint": "fp_e2bde53e6e",
        "service_tier": "default",
        "choices": [
            {
                "index": 0,
                "delta": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_Z",
                            "type": "function",
                            "function": {"name": "wobbler", "arguments": ""},
                        }
                    ],
                    "refusal": None,
                },
                "finish_reason": None,
            }
        ],
    }
    decode_chunk(chunk, out)
    assert out[:2] == [ResponseMeta("fp_e2bde53e6e", "default"), RoleStart(0, tool_call=True)]
    out = []
    decode_chunk({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}, out)
    assert out == [RoleStart(0)], "text opens with an empty string; no fields, no meta"
    out = []
    decode_chunk({"system_fingerprint": 7, "choices": [{"delta": {"role": "assistant"}}]}, out)
    assert out == [RoleStart(0)], "only strings are passed on"
