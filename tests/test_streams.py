"""Cancellation, detach and resume against the real gateway and a real sim upstream."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from sluice.wire.sse import SSEDecoder
from tests.faults import new_key, upstream_saw
from tests.servers import ServerProcess


def body(sim: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "model": "relay",
        "stream": True,
        "seed": 42,
        "messages": [{"role": "user", "content": "Write about resumable streams"}],
        "sim": sim,
        **extra,
    }


def text_of(records: list[str]) -> str:
    out = []
    for data in records:
        if data == "[DONE]":
            continue
        chunk = json.loads(data)
        for choice in chunk.get("choices") or ():
            out.append(choice["delta"].get("content") or "")
    return "".join(out)


async def read_all(response: aiohttp.ClientResponse) -> list[str]:
    decoder = SSEDecoder()
    records: list[str] = []
    async for piece in response.content.iter_any():
        records += [event.data for event in decoder.feed(piece)]
    return records


async def wait_for_disconnect(upstream: ServerProcess, key: str) -> float:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        seen = upstream_saw(upstream, key)
        if seen.get("disconnected_at"):
            stamp: float = seen["disconnected_at"][0]
            return stamp
        await asyncio.sleep(0.02)
    raise AssertionError("the upstream never saw the disconnect")


async def test_client_leaving_mid_stream_closes_upstream_within_100ms(
    gateway: ServerProcess, upstream: ServerProcess
) -> None:
    key = new_key()
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            gateway.url + "/v1/chat/completions",
            json=body({"tokens_per_second": 20, "key": key}),
        )
        stream_id = response.headers["x-sluice-stream-id"]
        decoder = SSEDecoder()
        received = 0
        async for piece in response.content.iter_any():
            received += len(decoder.feed(piece))
            if received >= 4:
                break
        response.close()
        left_at = time.time()
    stamp = await wait_for_disconnect(upstream, key)
    assert stamp - left_at < 0.1
    assert upstream_saw(upstream, key)["completed"] == 0
    # The tokens used so far are recorded on the generation (an estimate: no usage came).
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{gateway.url}/v1/streams/{stream_id}/cancel") as answer,
    ):
        state = await answer.json()
    assert state["status"] == "cancelled"
    assert state["usage"]["completion_tokens"] >= 3


async def test_client_leaving_before_first_token_closes_upstream(
    gateway: ServerProcess, upstream: ServerProcess
) -> None:
    key = new_key()
    async with aiohttp.ClientSession() as session:
        request = session.post(
            gateway.url + "/v1/chat/completions", json=body({"ttft_ms": 5000, "key": key})
        )
        try:
            await asyncio.wait_for(request, 0.4)
        except TimeoutError:
            left_at = time.time()
        else:
            raise AssertionError("headers must wait for the first token")
    stamp = await wait_for_disconnect(upstream, key)
    assert stamp - left_at < 0.1


async def test_detached_stream_resumes_byte_for_byte(gateway: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        whole_response = await session.post(
            gateway.url + "/v1/chat/completions", json=body({"tokens_per_second": 200})
        )
        whole = text_of(await read_all(whole_response))

        response = await session.post(
            gateway.url + "/v1/chat/completions",
            json=body({"tokens_per_second": 100}),
            headers={"X-Sluice-On-Disconnect": "detach"},
        )
        stream_id = response.headers["x-sluice-stream-id"]
        decoder = SSEDecoder()
        first: list[str] = []
        async for piece in response.content.iter_any():
            first += [event.data for event in decoder.feed(piece)]
            if len(first) >= 10:
                break
        response.close()  # the connection dies mid-answer
        await asyncio.sleep(0.3)

        async with session.get(
            f"{gateway.url}/v1/streams/{stream_id}", params={"after": str(len(first))}
        ) as resumed:
            assert resumed.status == 200
            decoder = SSEDecoder()
            rest_events = []
            async for piece in resumed.content.iter_any():
                rest_events += decoder.feed(piece)
        rest = [event.data for event in rest_events]
        assert rest[-1] == "[DONE]"
        assert int(rest_events[0].id) == len(first) + 1, "ids continue the sequence"
        assert text_of(first) + text_of(rest) == whole


async def test_resume_with_last_event_id_and_full_replay(gateway: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            gateway.url + "/v1/chat/completions", json=body({"tokens_per_second": 500})
        )
        stream_id = response.headers["x-sluice-stream-id"]
        original = await read_all(response)
        url = f"{gateway.url}/v1/streams/{stream_id}"
        async with session.get(url) as replay:
            full = await read_all(replay)
        assert full == original, "the finished stream replays whole"
        async with session.get(url, headers={"Last-Event-ID": "5"}) as replay:
            tail = await read_all(replay)
        assert tail == original[5:]
        async with session.get(url, params={"after": "x"}) as bad:
            assert bad.status == 400
        async with session.get(f"{gateway.url}/v1/streams/nope") as missing:
            assert missing.status == 404
            assert (await missing.json())["error"]["code"] == "not_found"


async def test_cancel_endpoint_stops_a_detached_stream(
    gateway: ServerProcess, upstream: ServerProcess
) -> None:
    key = new_key()
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            gateway.url + "/v1/chat/completions",
            json=body({"tokens_per_second": 20, "key": key}),
            headers={"X-Sluice-On-Disconnect": "detach"},
        )
        stream_id = response.headers["x-sluice-stream-id"]
        decoder = SSEDecoder()
        records: list[str] = []
        async for piece in response.content.iter_any():
            records += [event.data for event in decoder.feed(piece)]
            if len(records) >= 3:
                break
        response.close()
        await asyncio.sleep(0.3)
        assert upstream_saw(upstream, key)["disconnected"] == 0, "detached: still generating"
        async with session.post(f"{gateway.url}/v1/streams/{stream_id}/cancel") as answer:
            state = await answer.json()
        assert state["status"] == "cancelled" and state["cancelled"] is True
        assert state["usage"]["completion_tokens"] >= 3
        await wait_for_disconnect(upstream, key)
        async with session.get(f"{gateway.url}/v1/streams/{stream_id}") as replay:
            records = await read_all(replay)
        finishes = [
            c["choices"][0]["finish_reason"]
            for c in map(json.loads, records[:-1])
            if c["choices"] and c["choices"][0]["finish_reason"]
        ]
        assert finishes == ["incomplete"]
        assert records[-1] == "[DONE]"


async def test_bad_disconnect_policy_is_400(gateway: ServerProcess) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            gateway.url + "/v1/chat/completions",
            json=body({}),
            headers={"X-Sluice-On-Disconnect": "sometimes"},
        ) as response,
    ):
        assert response.status == 400


async def test_client_that_stops_reading_is_cut_off(
    gateway: ServerProcess, upstream: ServerProcess
) -> None:
    import socket

    key = new_key()
    payload = json.dumps(body({"tokens_per_second": 0, "length": 150000, "key": key})).encode()
    host, port = "127.0.0.1", gateway.port
    sock = socket.socket()
    # A tiny receive window, so the gateway's writes back up quickly.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, port))
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\n"
        + f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    assert sock.recv(200).startswith(b"HTTP/1.1 200")
    try:
        # Stop reading. send_timeout_seconds is 2 in the test config.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if upstream_saw(upstream, key)["disconnected"]:
                break
            await asyncio.sleep(0.1)
        seen = upstream_saw(upstream, key)
        assert seen["disconnected"] == 1, seen
        assert seen["completed"] == 0
        # The gateway closed the connection: draining what is buffered ends in EOF.
        sock.settimeout(5)
        while sock.recv(65536):
            pass
    finally:
        sock.close()


async def test_resume_client_that_stops_reading_is_cut_off(gateway: ServerProcess) -> None:
    """The resume endpoint goes through the same relay: a reader that stops taking
    what it is sent is cut off too (send_timeout_seconds is 2 in the test config)."""
    import socket

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            gateway.url + "/v1/chat/completions",
            json=body({"tokens_per_second": 0, "length": 150000}),
            headers={"X-Sluice-On-Disconnect": "detach"},
        ) as response,
    ):
        stream_id = response.headers["x-sluice-stream-id"]
        await response.content.readline()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", gateway.port))
    sock.sendall(f"GET /v1/streams/{stream_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    try:
        assert sock.recv(200).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        await asyncio.sleep(5)  # stop reading: well past the send timeout
        # The gateway closed the connection: draining what is buffered ends in EOF
        # (a connection still open would keep sending 150,000 tokens for much longer).
        sock.settimeout(5)
        received = 0
        while chunk := sock.recv(65536):
            received += len(chunk)
        assert time.monotonic() - started < 20
        assert received < 150000 * 50  # the whole answer is over 15 MB
    finally:
        sock.close()
