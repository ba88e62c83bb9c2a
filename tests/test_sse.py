"""The SSE codec against the WHATWG event-stream rules, byte for byte.

Table cases pin each rule with exact input; a literal transcription of the spec serves as
the oracle for arbitrary input; and feeding in chunks must never change the outcome.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.wire.sse import ServerSentEvent, SSEDecoder, encode, encode_comment

E = ServerSentEvent
BOM = b"\xef\xbb\xbf"


def decode(stream: bytes, *, bytewise: bool = False) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    if bytewise:
        events = [e for i in range(len(stream)) for e in decoder.feed(stream[i : i + 1])]
    else:
        events = decoder.feed(stream)
    decoder.close()
    return events


def spec_decode(stream: bytes) -> tuple[list[ServerSentEvent], str, int | None]:
    """The spec's "Interpreting an event stream", transcribed step by step, whole stream
    at once: (events, last event ID string, reconnection time)."""
    # "UTF-8 decode" strips one leading BOM and replaces invalid bytes.
    text = stream.decode("utf-8-sig", "replace")
    # The piece after the last line ending is the unterminated line discarded at EOF.
    lines = re.split(r"\r\n|\r|\n", text)[:-1]
    data = event_type = id_buffer = last_event_id = ""
    retry: int | None = None
    event_retry: int | None = None
    events = []
    for line in lines:
        if line == "":
            last_event_id = id_buffer
            if data == "":
                event_type = ""
                event_retry = None
                continue
            if data.endswith("\n"):
                data = data[:-1]
            events.append(E(data, event_type or "message", last_event_id, event_retry))
            data = event_type = ""
            event_retry = None
            continue
        if line.startswith(":"):
            continue
        if ":" in line:
            field, value = line.split(":", 1)
            if value.startswith(" "):
                value = value[1:]
        else:
            field, value = line, ""
        if field == "event":
            event_type = value
        elif field == "data":
            data += value + "\n"
        elif field == "id":
            if "\0" not in value:
                id_buffer = value
        elif field == "retry" and re.fullmatch("[0-9]+", value):
            retry = event_retry = int(value)
    return events, last_event_id, retry


CASES = [
    # Line endings
    pytest.param(b"data: a\n\n", [E("a")], id="lf"),
    pytest.param(b"data: a\r\r", [E("a")], id="cr"),
    pytest.param(b"data: a\r\n\r\n", [E("a")], id="crlf"),
    pytest.param(b"data: a\r\ndata: b\rdata: c\n\r\n", [E("a\nb\nc")], id="mixed-endings"),
    pytest.param(b"data: a\n\r", [E("a")], id="lf-then-cr-is-two-line-ends"),
    pytest.param(
        b"data: a\r\n\ndata: b\r\rdata: c\n\n", [E("a"), E("b"), E("c")], id="mixed-blank"
    ),
    # BOM
    pytest.param(BOM + b"data: a\n\n", [E("a")], id="bom-stripped"),
    pytest.param(BOM + BOM + b"data: a\n\n", [], id="second-bom-makes-unknown-field"),
    pytest.param(BOM + b"data: " + BOM + b"x\n\n", [E("\ufeffx")], id="second-bom-kept-in-data"),
    pytest.param(b"data: a\n\n" + BOM + b"data: b\n\n", [E("a")], id="bom-only-at-start"),
    pytest.param(b"\xef\xbbx\ndata: a\n\n", [E("a")], id="bom-prefix-that-is-not-a-bom"),
    # Comments, field names, values
    pytest.param(b": hi\ndata: a\n:no space\n\n", [E("a")], id="comments"),
    pytest.param(b": ping\n\n", [], id="comment-only"),
    pytest.param(b"data\n\n", [E("")], id="no-colon-data-is-empty-data"),
    pytest.param(b"data:\n\n", [E("")], id="empty-data-value-dispatches"),
    pytest.param(b"data\ndata\n\n", [E("\n")], id="two-empty-data-lines"),
    pytest.param(b"data:a\n\n", [E("a")], id="no-space"),
    pytest.param(b"data:  a\n\n", [E(" a")], id="only-one-space-removed"),
    pytest.param(b"data:\ta\n\n", [E("\ta")], id="tab-not-removed"),
    pytest.param(b"data: a \n\n", [E("a ")], id="trailing-space-kept"),
    pytest.param(b"data: a: b\n\n", [E("a: b")], id="split-at-first-colon"),
    pytest.param(b"data : a\n\n", [], id="space-before-colon-is-other-field"),
    pytest.param(b"Data: a\n\n", [], id="field-names-case-sensitive"),
    pytest.param(b"foo: bar\ndata: a\n\n", [E("a")], id="unknown-field-ignored"),
    pytest.param(b"data: a\x00b\n\n", [E("a\x00b")], id="nul-in-data-kept"),
    # Data
    pytest.param(b"data: a\ndata: b\ndata: c\n\n", [E("a\nb\nc")], id="multi-line-data"),
    pytest.param(b"data: a\ndata:\ndata: b\n\n", [E("a\n\nb")], id="empty-middle-data-line"),
    pytest.param(
        b"data: a\xe2\x80\xa8b\xc2\x85c\x0b\x0c\x1cd\n\n",
        [E("a\u2028b\x85c\x0b\x0c\x1cd")],
        id="only-cr-and-lf-break-lines",
    ),
    # Event type
    pytest.param(
        b"event: add\ndata: 1\n\ndata: 2\n\n", [E("1", "add"), E("2")], id="type-reset-after"
    ),
    pytest.param(b"event: add\n\ndata: x\n\n", [E("x")], id="type-reset-without-dispatch"),
    pytest.param(b"event:\ndata: x\n\n", [E("x")], id="empty-type-is-message"),
    pytest.param(b"event\ndata: x\n\n", [E("x")], id="no-colon-type-is-message"),
    pytest.param(b"event: a\nevent: b\ndata: x\n\n", [E("x", "b")], id="last-type-wins"),
    # Empty data buffer: nothing dispatched
    pytest.param(b"\n\n\n", [], id="blank-lines"),
    pytest.param(b"event: x\n\n", [], id="type-without-data"),
    # Last event ID
    pytest.param(
        b"id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: 2\ndata: d\n\n",
        [E("a", id="1"), E("b", id="1"), E("c"), E("d", id="2")],
        id="id-persists-until-changed",
    ),
    pytest.param(b"data: a\nid: 5\n\n", [E("a", id="5")], id="id-after-data-in-block"),
    pytest.param(b"id: 7\n\ndata: a\n\n", [E("a", id="7")], id="id-set-without-dispatch"),
    pytest.param(b"id: 1\n\nid: 2\x00\ndata: a\n\n", [E("a", id="1")], id="id-with-nul-ignored"),
    pytest.param(b"id: \xe2\x98\x83\ndata: a\n\n", [E("a", id="☃")], id="id-unicode"),
    # Retry
    pytest.param(b"retry: 1000\ndata: a\n\n", [E("a", retry=1000)], id="retry"),
    pytest.param(b"retry:1000\ndata: a\n\n", [E("a", retry=1000)], id="retry-no-space"),
    pytest.param(b"retry: 0\ndata: a\n\n", [E("a", retry=0)], id="retry-zero"),
    pytest.param(b"retry: 007\ndata: a\n\n", [E("a", retry=7)], id="retry-leading-zeros"),
    pytest.param(b"retry: 12a\ndata: a\n\n", [E("a")], id="retry-not-digits"),
    pytest.param(b"retry: -1\ndata: a\n\n", [E("a")], id="retry-negative"),
    pytest.param(b"retry:  5\ndata: a\n\n", [E("a")], id="retry-second-space"),
    pytest.param(b"retry: 5.0\ndata: a\n\n", [E("a")], id="retry-decimal"),
    pytest.param(b"retry\ndata: a\n\n", [E("a")], id="retry-empty"),
    pytest.param(b"retry: \xd9\xa3\ndata: a\n\n", [E("a")], id="retry-non-ascii-digit"),
    pytest.param(
        b"retry: 5\ndata: a\n\ndata: b\n\n", [E("a", retry=5), E("b")], id="retry-per-event"
    ),
    # Unterminated input at close()
    pytest.param(b"data: a", [], id="unterminated-line"),
    pytest.param(b"data: a\n", [], id="unterminated-event"),
    pytest.param(b"data: a\n\ndata: b\n", [E("a")], id="unterminated-last-event"),
    # Invalid UTF-8
    pytest.param(b"data: \xff\xfe\n\n", [E("\ufffd\ufffd")], id="invalid-bytes"),
    pytest.param(b"data: \xe3\x81\n\n", [E("\ufffd")], id="truncated-sequence"),
    pytest.param(b"data: a\xc0\x80b\n\n", [E("a\ufffd\ufffdb")], id="overlong-encoding"),
    pytest.param(b"dat\xffa: x\n\n", [], id="invalid-field-name"),
]


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
@pytest.mark.parametrize(("stream", "expected"), CASES)
def test_decode(stream: bytes, expected: list[ServerSentEvent], bytewise: bool) -> None:
    assert decode(stream, bytewise=bytewise) == expected
    assert spec_decode(stream)[0] == expected


@pytest.mark.parametrize(
    "chunks",
    [
        [b"\xef", b"\xbb\xbfdata: a\n\n"],
        [b"\xef\xbb", b"\xbfdata: a\n\n"],
        [b"\xef", b"\xbb", b"\xbf", b"data: a\n\n"],
        [b"", b"\xef\xbb\xbf", b"", b"data: a\n\n"],
        [b"\xef\xbb\xbfd", b"ata: a\n\n"],
    ],
)
def test_bom_split_across_feeds(chunks: list[bytes]) -> None:
    decoder = SSEDecoder()
    assert [e for chunk in chunks for e in decoder.feed(chunk)] == [E("a")]


def test_bom_stripped_again_after_close() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(BOM + b"data: a\n\n") == [E("a")]
    decoder.close()
    assert decoder.feed(BOM + b"data: b\n\n") == [E("b")]


def test_crlf_split_across_feeds() -> None:
    decoder = SSEDecoder()
    # The LF after a chunk-ending CR completes the CRLF; it is not a second, blank line.
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\r") == [E("a")]
    assert decoder.feed(b"\ndata: b\r") == []
    assert decoder.feed(b"\r") == [E("b")]


def test_last_event_id_and_retry_state() -> None:
    decoder = SSEDecoder()
    assert (decoder.last_event_id, decoder.retry) == ("", None)
    # Set on the blank line even though nothing is dispatched.
    assert decoder.feed(b"id: 1\nretry: 3000\n\n") == []
    assert (decoder.last_event_id, decoder.retry) == ("1", 3000)
    # An invalid retry keeps the previous reconnection time.
    assert decoder.feed(b"retry: soon\ndata: a\n\n") == [E("a", id="1")]
    assert decoder.retry == 3000
    # An id only takes effect when its block ends; retry takes effect on its own line.
    assert decoder.feed(b"id: 2\nretry: 10\ndata: b\n") == []
    assert (decoder.last_event_id, decoder.retry) == ("1", 10)
    # close() discards the unterminated event, its id included, but the connection's last
    # event ID and reconnection time carry over to the next stream.
    decoder.close()
    assert (decoder.last_event_id, decoder.retry) == ("1", 10)
    assert decoder.feed(b"data: c\n\n") == [E("c", id="1")]


def test_close_discards_partial_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: b") == [E("a")]
    decoder.close()
    assert decoder.feed(b"\n\n") == []
    assert decoder.feed(b"data: c\n\n") == [E("c")]


def test_huge_retry_does_not_raise() -> None:
    # 5,000 digits is past Python's int-from-str limit.
    assert decode(b"retry: " + b"9" * 5000 + b"\ndata: a\n\n") == [E("a")]


def test_multibyte_text_split_anywhere() -> None:
    text = "こんにちは、世界 🌊"
    stream = f"data: {text}\nid: {text}\n\n".encode()
    expected = [E(text, id=text)]
    for cut in range(len(stream) + 1):
        decoder = SSEDecoder()
        assert decoder.feed(stream[:cut]) + decoder.feed(stream[cut:]) == expected, cut
    assert decode(stream, bytewise=True) == expected


def test_openai_stream() -> None:
    chunks = [
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
        }
        for piece in ["Hel", "lo", " wörld", "\n"]
    ]
    records = [f"data: {json.dumps(chunk)}\n\n".encode() for chunk in chunks]
    records.append(b"data: [DONE]\n\n")
    stream = b"".join(records)

    decoder = SSEDecoder()
    per_record = [e for record in records for e in decoder.feed(record)]
    assert per_record == decode(stream) == decode(stream, bytewise=True)
    assert [json.loads(e.data) for e in per_record[:-1]] == chunks
    assert per_record[-1] == E("[DONE]")
    assert all(e.event == "message" and e.id == "" and e.retry is None for e in per_record)


# Fragments that make up the interesting streams; raw binary covers everything else.
_PIECES = [
    *(b"data", b"event", b"id", b"retry", b"dat", b"x", b"42", b"\x00"),
    *(b":", b" ", b"  ", b"\r", b"\n", b"\r\n", b"\n\n"),
    *(BOM, b"\xef", b"\xbb", b"\xbf", "本🌊".encode(), b"\xe6\x97", b"\xff"),
]
streams = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from(_PIECES), max_size=80).map(b"".join),
)


@given(streams)
def test_matches_spec_transcription(stream: bytes) -> None:
    decoder = SSEDecoder()
    events = decoder.feed(stream)
    decoder.close()
    assert (events, decoder.last_event_id, decoder.retry) == spec_decode(stream)


@given(st.data(), streams)
def test_any_chunking_gives_the_same_result(data: st.DataObject, stream: bytes) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]

    whole = SSEDecoder()
    chunked = SSEDecoder()
    expected = whole.feed(stream)
    assert [e for chunk in chunks for e in chunked.feed(chunk)] == expected
    assert (chunked.last_event_id, chunked.retry) == (whole.last_event_id, whole.retry)


# --- Encoder -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        pytest.param(encode("hello"), b"data: hello\n\n", id="plain"),
        pytest.param(encode(""), b"data:\n\n", id="empty"),
        pytest.param(encode(" x"), b"data:  x\n\n", id="leading-space"),
        pytest.param(encode("a\nb\r\nc\rd"), b"data: a\ndata: b\ndata: c\ndata: d\n\n", id="lines"),
        pytest.param(encode("a\n"), b"data: a\ndata:\n\n", id="trailing-lf"),
        pytest.param(
            encode("x", event="add", id="7", retry=1000),
            b"event: add\nid: 7\nretry: 1000\ndata: x\n\n",
            id="all-fields",
        ),
        pytest.param(encode("x", id=""), b"id:\ndata: x\n\n", id="reset-id"),
    ],
)
def test_encode(encoded: bytes, expected: bytes) -> None:
    assert encoded == expected


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"event": "a\nb"}, id="event-lf"),
        pytest.param({"event": "a\r"}, id="event-cr"),
        pytest.param({"id": "a\nb"}, id="id-lf"),
        pytest.param({"id": "a\rb"}, id="id-cr"),
        pytest.param({"id": "a\x00b"}, id="id-nul"),
        pytest.param({"retry": -1}, id="retry-negative"),
    ],
)
def test_encode_rejects_what_the_stream_cannot_carry(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="SSE"):
        encode("x", **fields)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("ping", b": ping\n\n"), ("", b":\n\n"), ("a\nb", b": a\n: b\n\n")],
)
def test_encode_comment(text: str, expected: bytes) -> None:
    assert encode_comment(text) == expected
    assert decode(expected) == []


def test_comments_between_events_change_nothing() -> None:
    stream = encode("a", event="e") + encode_comment("ping") + encode("b")
    assert decode(stream) == [E("a", "e"), E("b")]


def _normalize(data: str) -> str:
    return re.sub(r"\r\n|\r|\n", "\n", data)


_names = st.text().filter(lambda s: "\r" not in s and "\n" not in s)
_ids = _names.filter(lambda s: "\0" not in s)


@given(
    data=st.text(),
    event=st.none() | _names,
    id=st.none() | _ids,
    retry=st.none() | st.integers(min_value=0),
)
def test_encode_round_trip(data: str, event: str | None, id: str | None, retry: int | None) -> None:
    decoder = SSEDecoder()
    events = decoder.feed(encode(data, event=event, id=id, retry=retry))
    assert events == [E(_normalize(data), event or "message", id or "", retry)]
    assert decoder.retry == retry


@given(st.lists(st.tuples(st.text(), st.none() | _names, st.none() | _ids), max_size=8))
def test_encode_round_trip_stream(blocks: list[tuple[str, str | None, str | None]]) -> None:
    stream = encode_comment("hello").join(
        encode(data, event=event, id=id) for data, event, id in blocks
    )
    expected = []
    last_id = ""
    for data, event, id in blocks:
        last_id = last_id if id is None else id
        expected.append(E(_normalize(data), event or "message", last_id))
    assert decode(stream) == expected
