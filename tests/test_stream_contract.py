"""The Stream contract, run over both implementations — a generation running here
(LocalStream) and one running on another engine, read from the shared log in Redis
(SharedStream) — and the relay's encoders resuming at any point."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from sluice.engine.engine import Engine
from sluice.engine.stream import LocalStream, Stream, batches
from sluice.events import Event, Finish, TextDelta, Usage
from sluice.http.encoders import ChatEvents, ChatSocketFrames, OpenAIChunks
from sluice.http.relay import relay
from sluice.runtime import Runtime
from sluice.settings import ModelConfig, Settings
from sluice.wire.openai_request import chat_request_from_body
from sluice.wire.sse import SSEDecoder

REDIS = "redis://127.0.0.1:6379/0"


def settings(prefix: str) -> Settings:
    return Settings(
        models=[
            ModelConfig(
                name="sim",
                provider="sim",
                options={"ttft_ms": 0, "tokens_per_second": 400, "length": 40},
            )
        ],
        redis_url=SecretStr(REDIS),
        redis_prefix=prefix,
    )


def request(sim: dict[str, Any] | None = None, **extra: Any) -> Any:
    return chat_request_from_body(
        {
            "model": "sim",
            "messages": [{"role": "user", "content": "Tell me about rivers"}],
            "stream": True,
            "stream_options": {"include_usage": True},
            **({"sim": sim} if sim else {}),
            **extra,
        }
    )


@pytest.fixture
async def engines(tmp_path: Path) -> AsyncIterator[tuple[Engine, Engine]]:
    """Two gateways' engines on one Redis, as the composition root builds them."""
    prefix = "contract-" + secrets.token_hex(6)
    owner = Runtime.build(settings(prefix).model_copy(update={"data_dir": tmp_path / "a"}))
    reader = Runtime.build(settings(prefix).model_copy(update={"data_dir": tmp_path / "b"}))
    owner.engine.start_background()
    reader.engine.start_background()
    try:
        yield owner.engine, reader.engine
    finally:
        try:
            async with asyncio.timeout(10):
                await owner.aclose()
                await reader.aclose()
        except TimeoutError:
            pytest.fail("closing the engines hung")


@pytest.fixture(params=["local", "shared"])
async def stream(
    request: pytest.FixtureRequest, engines: tuple[Engine, Engine]
) -> AsyncIterator[tuple[Stream, LocalStream]]:
    owner, reader = engines
    generation = owner.start(_request(), owner="key:alice", policy="detach")
    local = LocalStream(generation)
    if request.param == "local":
        yield await owner.open_stream(generation.id, reader="key:alice"), local
        return
    assert owner.shared is not None
    await owner.shared.flush()  # the meta is written before the first batch
    yield await reader.open_stream(generation.id, reader="key:alice"), local


def _request() -> Any:
    return request()


async def test_every_event_in_order_then_closed(stream: tuple[Stream, LocalStream]) -> None:
    under_test, local = stream
    assert under_test.info == local.info
    got: list[Event] = []
    async for batch in batches(under_test):
        got.extend(batch)
    assert under_test.closed
    await local.wait_end()
    assert got == local.events
    assert any(type(e) is TextDelta for e in got)
    assert type(got[-1]) is Usage or type(got[-1]) is Finish


async def test_reading_after_n_starts_there(stream: tuple[Stream, LocalStream]) -> None:
    under_test, local = stream
    await local.wait_end()
    got: list[Event] = []
    async for batch in batches(under_test, after=5):
        got.extend(batch)
    assert got == local.events[5:]


async def test_wait_returns_once_more_or_the_end(stream: tuple[Stream, LocalStream]) -> None:
    under_test, local = stream
    async with under_test.subscribe():
        seen = 0
        while not under_test.closed:
            async with asyncio.timeout(5):
                await under_test.wait(seen)
            assert len(under_test.events) >= seen
            seen = len(under_test.events)
        await under_test.wait(seen)  # closed: returns at once
    assert seen == len(local.events)


async def test_another_owner_cannot_open_it(engines: tuple[Engine, Engine]) -> None:
    owner, reader = engines
    generation = owner.start(_request(), owner="key:alice", policy="detach")
    assert owner.shared is not None
    await owner.shared.flush()
    for engine in (owner, reader):
        with pytest.raises(Exception, match="No stream with id"):
            await engine.open_stream(generation.id, reader="key:bob")
    await LocalStream(generation).wait_end()


async def test_cancel_reaches_the_owner(stream: tuple[Stream, LocalStream]) -> None:
    under_test, local = stream
    slow = under_test  # the fixture's answer is fast; cancel may find it finished
    await slow.cancel()
    async with asyncio.timeout(10):
        await slow.wait_end()
    await local.wait_end()
    reasons = {e.reason for e in local.events if isinstance(e, Finish)}
    assert reasons <= {"incomplete", "stop", "length"}


# -- encoders resuming ---------------------------------------------------------------


class Collect:
    def __init__(self) -> None:
        self.out: list[Any] = []

    async def write(self, out: Any) -> None:
        self.out.append(out)

    async def ping(self) -> None:
        return None


def records(body: bytes) -> list[tuple[str | None, str]]:
    decoder = SSEDecoder()
    events = decoder.feed(body)
    decoder.close()
    return [(event.id, event.data) for event in events]


@pytest.mark.parametrize("after", [0, 1, 3, 7, 20, 1000])
async def test_openai_resume_sends_exactly_the_missing_records(
    engines: tuple[Engine, Engine], after: int
) -> None:
    owner, _ = engines
    generation = owner.start(_request(), policy="detach")
    stream = LocalStream(generation)
    await stream.wait_end()
    whole, rest = Collect(), Collect()
    await relay(
        stream, OpenAIChunks(stream.info, numbered=True), whole, keepalive=None, send_timeout=None
    )
    await relay(
        stream,
        OpenAIChunks(stream.info, numbered=True),
        rest,
        after=after,
        keepalive=None,
        send_timeout=None,
    )
    everything = records(b"".join(whole.out))
    assert everything[-1][1] == "[DONE]"
    numbered = [number for number, _ in everything[:-1]]
    assert numbered == [str(n) for n in range(1, len(numbered) + 1)]
    resumed = records(b"".join(rest.out))
    assert resumed[-1][1] == "[DONE]"
    assert resumed[:-1] == everything[:-1][after:]


@pytest.mark.parametrize("after", [0, 2, 9, 1000])
async def test_chat_resume_rebuilds_the_text_and_sends_the_rest(
    engines: tuple[Engine, Engine], after: int
) -> None:
    owner, _ = engines
    generation = owner.start(_request(), policy="detach", format="chat")
    stream = LocalStream(generation)
    await stream.wait_end()
    sse, socket = Collect(), Collect()
    await relay(
        stream,
        ChatEvents(stream.info, start=True),
        sse,
        after=after,
        keepalive=None,
        send_timeout=None,
    )
    await relay(
        stream,
        ChatSocketFrames(stream.info, start=True),
        socket,
        after=after,
        keepalive=None,
        send_timeout=None,
    )
    frames = [frame for batch in socket.out for frame in batch]
    over_sse = [orjson.loads(data) for _, data in records(b"".join(sse.out))]
    assert [f["type"] for f in frames] == [f["type"] for f in over_sse]
    assert frames[0]["type"] == "start" and frames[-1]["type"] == "done"
    assert all(f["seq"] is None or f["seq"] > after for f in frames[1:-1])
    full = "".join(e.text for e in stream.events if isinstance(e, TextDelta))
    assert frames[-1]["content"] == full  # the whole text, also when resumed late
    assert all(f["stream_id"] == stream.info.id for f in frames)


async def test_only_the_first_subscriber_takes_delivery(engines: tuple[Engine, Engine]) -> None:
    owner, _ = engines
    generation = owner.start(request(sim={"tokens_per_second": 50, "length": 30}))
    stream = LocalStream(generation)

    async def sink(batch: list[Event]) -> None:
        return None

    async with stream.subscribe():
        assert stream.attach(sink) is True
        # A resumer pulls; it must never take delivery from the client that asked.
        assert LocalStream(generation).attach(sink) is False
        stream.detach()
        assert LocalStream(generation).attach(sink) is True
        stream.detach()
    await generation.wait()


@pytest.mark.parametrize("numbered", [True, False])
async def test_server_stopping_ends_a_relay_with_an_unnumbered_record(
    engines: tuple[Engine, Engine], numbered: bool
) -> None:
    owner, _ = engines
    generation = owner.start(request(sim={"tokens_per_second": 20, "length": 400}), policy="detach")
    stream = LocalStream(generation)
    stopped = asyncio.Event()
    out = Collect()
    asyncio.get_running_loop().call_later(0.5, stopped.set)
    async with stream.subscribe():
        done = await relay(
            stream,
            OpenAIChunks(stream.info, numbered=numbered),
            out,
            keepalive=None,
            send_timeout=None,
            stopped=stopped,
        )
    assert done is True  # the caller ends the response cleanly
    body = b"".join(out.out)
    last = body.rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
    assert b"shutting_down" in last
    assert not last.startswith(b"id:")  # a client resuming elsewhere misses nothing
    assert b"[DONE]" not in body
    await (await owner.open_stream(generation.id, reader="anonymous")).cancel()
    await generation.wait()
