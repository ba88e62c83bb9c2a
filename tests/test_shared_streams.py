"""Two gateway instances sharing one Redis: a stream started on one is resumed and
cancelled on the other (real Redis on 127.0.0.1:6379, real processes)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from sluice.wire.sse import SSEDecoder
from tests.faults import new_key, upstream_saw
from tests.servers import ServerProcess, base_env, running
from tests.test_streams import body, read_all, text_of, wait_for_disconnect

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, gateway_config: Path, upstream: ServerProcess
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    tmp = tmp_path_factory.mktemp("pair")
    env = base_env(SLUICE_REDIS_URL=REDIS_URL)
    args = ["serve", "--config", str(gateway_config)]
    with (
        running(args, tmp, name="a", env=env) as first,
        running(args, tmp, name="b", env=env) as second,
    ):
        yield first, second


async def start_detached(
    session: aiohttp.ClientSession, url: str, sim: dict[str, object], records: int
) -> tuple[str, list[str]]:
    response = await session.post(
        url + "/v1/chat/completions", json=body(sim), headers={"X-Sluice-On-Disconnect": "detach"}
    )
    stream_id = response.headers["x-sluice-stream-id"]
    decoder = SSEDecoder()
    seen: list[str] = []
    async for piece in response.content.iter_any():
        seen += [event.data for event in decoder.feed(piece)]
        if len(seen) >= records:
            break
    response.close()
    return stream_id, seen


async def test_resume_on_another_instance(pair: tuple[ServerProcess, ServerProcess]) -> None:
    first, second = pair
    async with aiohttp.ClientSession() as session:
        async with session.post(
            first.url + "/v1/chat/completions", json=body({"tokens_per_second": 300})
        ) as whole_response:
            whole = text_of(await read_all(whole_response))
        stream_id, seen = await start_detached(session, first.url, {"tokens_per_second": 60}, 8)
        async with session.get(
            f"{second.url}/v1/streams/{stream_id}", params={"after": str(len(seen))}
        ) as resumed:
            assert resumed.status == 200
            rest = await read_all(resumed)
        assert rest[-1] == "[DONE]"
        assert text_of(seen) + text_of(rest) == whole
        # The finished stream stays replayable from either instance.
        async with session.get(f"{second.url}/v1/streams/{stream_id}") as again:
            assert text_of(await read_all(again)) == whole


async def test_cancel_on_another_instance(
    pair: tuple[ServerProcess, ServerProcess], upstream: ServerProcess
) -> None:
    first, second = pair
    key = new_key()
    async with aiohttp.ClientSession() as session:
        stream_id, _ = await start_detached(
            session, first.url, {"tokens_per_second": 20, "key": key}, 3
        )
        await asyncio.sleep(0.2)
        async with session.post(f"{second.url}/v1/streams/{stream_id}/cancel") as answer:
            assert answer.status == 200
            state = await answer.json()
    assert state["status"] == "cancelled"
    assert state["usage"]["completion_tokens"] >= 2
    await wait_for_disconnect(upstream, key)
    assert upstream_saw(upstream, key)["completed"] == 0


async def test_unknown_stream_is_404_everywhere(
    pair: tuple[ServerProcess, ServerProcess],
) -> None:
    async with aiohttp.ClientSession() as session:
        for server in pair:
            async with session.get(f"{server.url}/v1/streams/{new_key()}") as response:
                assert response.status == 404


async def test_a_failed_stream_replays_its_error_on_another_instance(
    pair: tuple[ServerProcess, ServerProcess],
) -> None:
    first, second = pair
    async with aiohttp.ClientSession() as session:
        async with session.post(
            first.url + "/v1/chat/completions",
            json=body({"tokens_per_second": 500, "drop_after": 5}),
            headers={"X-Sluice-On-Disconnect": "detach"},
        ) as response:
            stream_id = response.headers["x-sluice-stream-id"]
            original = await read_all(response)
        assert "[DONE]" not in original
        await asyncio.sleep(0.2)
        async with session.get(f"{second.url}/v1/streams/{stream_id}") as replay:
            assert replay.status == 200
            records = await read_all(replay)
        assert records == original
        assert "error" in records[-1]
        async with session.post(f"{second.url}/v1/streams/{stream_id}/cancel") as answer:
            assert answer.status == 200
            assert (await answer.json())["status"] == "failed"


async def test_a_chat_stream_resumes_on_another_instance(
    pair: tuple[ServerProcess, ServerProcess],
) -> None:
    from tests.chat_client import chat

    first, second = pair
    body = {
        "message": "resume me elsewhere",
        "model": "relay",
        "options": {"sim": {"tokens_per_second": 60}},
    }
    cut = await chat(first.url, body, stop_after=6)
    last = max(int(e.id) for e in cut.events if e.id)
    stream_id = cut.start["stream_id"]
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{second.url}/v1/streams/{stream_id}", params={"after": str(last)}
        ) as response,
    ):
        assert response.status == 200
        decoder = SSEDecoder()
        rest = []
        async for piece in response.content.iter_any():
            rest += decoder.feed(piece)
    import json

    frames = [json.loads(e.data) for e in rest]
    assert frames[0]["type"] == "start"
    assert frames[0]["conversation_id"] == cut.start["conversation_id"]
    assert int(rest[1].id) == last + 1
    done = frames[-1]
    assert done["type"] == "done" and done["finish_reason"] == "stop"
    text = cut.text + "".join(f["content"] for f in frames if f["type"] == "content")
    assert text == done["content"]
