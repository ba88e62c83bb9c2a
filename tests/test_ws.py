"""``GET /ws`` against the real gateway: turns, several streams on one socket, stop,
resume on a new socket, bad frames and the size limit."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.faults import new_key, upstream_saw
from tests.servers import ServerProcess

Frame = dict[str, Any]


@asynccontextmanager
async def chat_socket(gateway: ServerProcess) -> AsyncIterator[ClientConnection]:
    async with websockets.connect(f"ws://127.0.0.1:{gateway.port}/ws") as ws:
        yield ws


async def send(ws: ClientConnection, frame: Frame) -> None:
    await ws.send(json.dumps(frame))


async def receive(ws: ClientConnection) -> Frame:
    frame = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert isinstance(frame, dict)
    return frame


async def until_ended(ws: ClientConnection, streams: int = 1) -> list[Frame]:
    """Frames until ``streams`` streams have ended with a done or an error frame."""
    frames: list[Frame] = []
    while streams:
        frame = await receive(ws)
        frames.append(frame)
        if frame["type"] in ("done", "error") and "stream_id" in frame:
            streams -= 1
    return frames


def text_of(frames: list[Frame], stream_id: str) -> str:
    return "".join(
        f["content"] for f in frames if f["type"] == "content" and f["stream_id"] == stream_id
    )


def chat(message: str, model: str = "relay", **sim: Any) -> Frame:
    return {"type": "chat", "message": message, "model": model, "options": {"sim": sim}}


async def stored_messages(gateway: ServerProcess, conversation_id: str) -> list[Frame]:
    """The conversation's messages, once the answer is no longer marked streaming."""
    deadline = time.monotonic() + 5
    async with aiohttp.ClientSession() as session:
        while True:
            url = f"{gateway.url}/v1/conversations/{conversation_id}"
            async with session.get(url) as response:
                assert response.status == 200, await response.text()
                messages: list[Frame] = (await response.json())["messages"]
            if messages[-1]["status"] != "streaming" or time.monotonic() > deadline:
                return messages
            await asyncio.sleep(0.02)


async def test_turn_streams_start_content_usage_done_and_is_stored(
    gateway: ServerProcess,
) -> None:
    async with chat_socket(gateway) as ws:
        await send(ws, chat("Tell me about sockets", model="sim"))
        frames = await until_ended(ws)
    start, done = frames[0], frames[-1]
    assert start["type"] == "start" and start["seq"] is None and start["model"] == "sim"
    stream_id = start["stream_id"]
    assert {f["stream_id"] for f in frames} == {stream_id}
    kinds = [f["type"] for f in frames]
    assert kinds[1] == "content" and kinds[-2:] == ["usage", "done"], kinds
    assert set(kinds[1:-2]) == {"content"}, kinds
    seqs = [f["seq"] for f in frames[1:-1]]
    assert seqs == sorted(set(seqs)), "seq numbers rise"
    assert done["finish_reason"] == "stop" and done["ttft_ms"] is not None
    assert done["content"] == text_of(frames, stream_id) != ""
    assert (done["conversation_id"], done["message_id"]) == (
        start["conversation_id"],
        start["message_id"],
    )

    question, answer = await stored_messages(gateway, start["conversation_id"])
    assert (question["role"], question["content"]) == ("user", "Tell me about sockets")
    assert answer["role"] == "assistant" and answer["id"] == start["message_id"]
    assert answer["parent_id"] == question["id"] and answer["stream_id"] == stream_id
    assert (answer["status"], answer["finish_reason"]) == ("complete", "stop")
    assert answer["content"] == done["content"] and answer["ttft_ms"] is not None

    async with chat_socket(gateway) as ws:  # a follow-up turn in the same conversation
        await send(
            ws, {**chat("And again?", "relay-echo"), "conversation_id": done["conversation_id"]}
        )
        follow_up = (await until_ended(ws))[-1]
    assert follow_up["content"] == "And again?"
    messages = await stored_messages(gateway, start["conversation_id"])
    assert [m["parent_id"] for m in messages[2:]] == [answer["id"], messages[2]["id"]]
    assert messages[-1]["content"] == "And again?"


async def test_three_streams_interleave_on_one_socket(gateway: ServerProcess) -> None:
    echoes = [
        "first of two echoes, long enough to take a while to stream back",
        "the second echo is also here and it should not mix with the first",
    ]
    async with chat_socket(gateway) as ws:
        await send(ws, chat("Write about multiplexing", tokens_per_second=40, length=24))
        for message in echoes:
            await send(ws, chat(message, model="relay-echo", tokens_per_second=40))
        frames = await until_ended(ws, 3)
    starts = [f for f in frames if f["type"] == "start"]
    assert len(starts) == 3 and len({s["stream_id"] for s in starts}) == 3
    dones = {f["stream_id"]: f for f in frames if f["type"] == "done"}
    assert set(dones) == {s["stream_id"] for s in starts}, "every stream ends with done"
    for stream_id, done in dones.items():
        seqs = [f["seq"] for f in frames if f["stream_id"] == stream_id and f["seq"] is not None]
        assert seqs == sorted(seqs), f"frames of {stream_id} arrive in order"
        assert text_of(frames, stream_id) == done["content"] != ""
    echoed = sorted(dones[s["stream_id"]]["content"] for s in starts if s["model"] == "relay-echo")
    assert echoed == sorted(echoes), "each echo stream carries exactly its own message"
    order = [f["stream_id"] for f in frames if f["type"] == "content"]
    switches = sum(a != b for a, b in itertools.pairwise(order))
    assert switches >= 6, f"streams ran one after another, not at once ({switches} switches)"


async def test_stop_ends_the_stream_and_closes_the_upstream(
    gateway: ServerProcess, upstream: ServerProcess
) -> None:
    key = new_key()
    async with chat_socket(gateway) as ws:
        await send(ws, chat("Write about stopping", tokens_per_second=10, key=key))
        frames = [await receive(ws)]
        stream_id = frames[0]["stream_id"]
        while sum(f["type"] == "content" for f in frames) < 3:
            frames.append(await receive(ws))
        await send(ws, {"type": "stop", "stream_id": stream_id})
        frames += await until_ended(ws)
    done = frames[-1]
    assert done["type"] == "done" and done["finish_reason"] == "incomplete", done
    assert done["content"] == text_of(frames, stream_id)

    deadline = time.monotonic() + 5
    while True:
        seen = upstream_saw(upstream, key)
        if seen["disconnected"] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    assert (seen["disconnected"], seen["completed"]) == (1, 0), seen

    answer = (await stored_messages(gateway, done["conversation_id"]))[-1]
    assert (answer["status"], answer["finish_reason"]) == ("incomplete", "incomplete")
    assert answer["content"] == done["content"]


async def test_resume_on_a_new_socket_after_the_connection_drops(
    gateway: ServerProcess,
) -> None:
    url = f"ws://127.0.0.1:{gateway.port}/ws"
    first = await websockets.connect(url)
    await send(first, chat("Write about resuming", tokens_per_second=40, length=40))
    before = [await receive(first)]
    stream_id = before[0]["stream_id"]
    while sum(f["type"] == "content" for f in before) < 5:
        before.append(await receive(first))
    first.transport.abort()  # no closing handshake: the connection just dies
    await first.wait_closed()
    last = before[-1]["seq"]

    async with chat_socket(gateway) as ws:
        await send(ws, {"type": "resume", "stream_id": stream_id, "after": last})
        after = await until_ended(ws)
        start, done = after[0], after[-1]
        assert start["type"] == "start" and start["stream_id"] == stream_id
        assert start["message_id"] == before[0]["message_id"]
        assert after[1]["seq"] == last + 1, "frames continue right after the last one seen"
        assert done["type"] == "done" and done["finish_reason"] == "stop"
        text = text_of(before, stream_id) + text_of(after, stream_id)
        assert text == done["content"]

        # A finished stream replays whole from the start.
        await send(ws, {"type": "resume", "stream_id": stream_id, "after": 0})
        replay = await until_ended(ws)
        assert text_of(replay, stream_id) == text and replay[-1]["content"] == text

    answer = (await stored_messages(gateway, done["conversation_id"]))[-1]
    assert (answer["status"], answer["content"]) == ("complete", text)


BAD_FRAMES = [
    pytest.param("not json", None, "not valid JSON", id="not-json"),
    pytest.param("[1, 2]", None, "JSON object", id="array"),
    pytest.param('{"type": "shout"}', "type", "Unknown frame type", id="unknown-type"),
    pytest.param('{"type": "chat"}', None, "message", id="chat-without-message"),
    pytest.param('{"type": "chat", "message": ""}', "message", "message", id="empty-message"),
    pytest.param('{"type": "stop"}', "stream_id", "stream_id", id="stop-without-id"),
    pytest.param('{"type": "stop", "stream_id": "nope"}', "stream_id", "nope", id="stop-unknown"),
    pytest.param(
        '{"type": "resume", "stream_id": "nope"}', "stream_id", "nope", id="resume-unknown"
    ),
    pytest.param(
        '{"type": "resume", "stream_id": "nope", "after": -1}',
        "after",
        "after",
        id="negative-after",
    ),
    pytest.param(
        '{"type": "resume", "stream_id": "nope", "after": "3"}', "after", "after", id="string-after"
    ),
    pytest.param(
        '{"type": "chat", "message": "hi", "model": "no-such-model"}',
        "model",
        "no-such-model",
        id="unknown-model",
    ),
]


@pytest.mark.parametrize(("raw", "param", "named"), BAD_FRAMES)
async def test_bad_frame_gets_an_error_and_the_socket_stays_open(
    gateway: ServerProcess, raw: str, param: str | None, named: str
) -> None:
    async with chat_socket(gateway) as ws:
        await ws.send(raw)
        error = await receive(ws)
        assert error["type"] == "error" and error["error_type"] == "invalid_request_error"
        assert error["param"] == param and named in error["message"], error
        assert error["retryable"] is False
        await send(ws, {"type": "ping"})
        assert await receive(ws) == {"type": "pong"}


async def test_unknown_names_have_codes_and_params(gateway: ServerProcess) -> None:
    async with chat_socket(gateway) as ws:
        await send(ws, chat("hi", model="no-such-model"))
        assert (await receive(ws))["code"] == "model_not_found"
        await send(ws, {"type": "resume", "stream_id": "nope", "after": 0})
        error = await receive(ws)
        assert (error["code"], error["stream_id"]) == ("not_found", "nope")
        await send(ws, {**chat("hi"), "conversation_id": "nope"})
        error = await receive(ws)
    assert error["code"] == "not_found" and "nope" in error["message"]
    assert error["param"] == "conversation_id", (
        f"BUG: an unknown conversation_id in a chat frame is reported with param "
        f"{error['param']!r} (the store's REST-path name), not the frame's 'conversation_id'"
    )


async def test_upstream_failure_is_an_in_band_error_frame(
    gateway: ServerProcess, upstream: ServerProcess
) -> None:
    key = new_key()
    async with chat_socket(gateway) as ws:
        await send(ws, chat("Fail, please", fail_status=400, key=key))
        start, error = await until_ended(ws)
        assert error["type"] == "error" and error["stream_id"] == start["stream_id"]
        assert error["code"] == "upstream_rejected" and error["seq"] is not None
        await send(ws, {"type": "ping"})
        assert await receive(ws) == {"type": "pong"}
    assert upstream_saw(upstream, key)["attempts"] == 1, "a rejected request is not retried"
    answer = (await stored_messages(gateway, start["conversation_id"]))[-1]
    assert answer["status"] == "failed" and answer["error"]


async def test_stop_before_the_first_token_finishes_incomplete(gateway: ServerProcess) -> None:
    async with chat_socket(gateway) as ws:
        await send(ws, chat("Take your time", ttft_ms=600))
        start = await receive(ws)
        await send(ws, {"type": "stop", "stream_id": start["stream_id"]})
        done = (await until_ended(ws))[-1]
    answer = (await stored_messages(gateway, start["conversation_id"]))[-1]
    assert done["type"] == "done" and done["content"] == "" and answer["status"] == "incomplete"
    assert done["finish_reason"] == "incomplete", (
        "BUG: a turn stopped before its first token ends with done.finish_reason "
        f"{done['finish_reason']!r}; after the first token a stop reports 'incomplete' "
        "(Generation only finishes choices that opened, so the chat done frame gets none)"
    )


async def test_oversized_frame_closes_with_1009(gateway: ServerProcess) -> None:
    async with chat_socket(gateway) as ws:
        await send(ws, chat("x" * 70_000))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await receive(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    async with chat_socket(gateway) as ws:  # the gateway itself is fine
        await send(ws, {"type": "ping"})
        assert await receive(ws) == {"type": "pong"}
