"""Two gateway instances sharing one Redis: a stream started on one is resumed and
cancelled on the other (real Redis on 127.0.0.1:6379, real processes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis
from sqlalchemy import update

from sluice.chat.recovery import Recovery
from sluice.errors import Unavailable
from sluice.events import Event, Finish, RoleStart, TextDelta
from sluice.store.conversations import Message, SQLStore
from sluice.store.database import create_engine, database_url, migrate
from sluice.store.schema import messages
from sluice.store.shared_log import RedisEventLogs, StreamMeta
from sluice.wire.sse import SSEDecoder
from tests.faults import new_key, upstream_saw
from tests.servers import ServerProcess, base_env, free_port, running
from tests.test_streams import body, read_all, text_of, wait_for_disconnect

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, gateway_config: Path, upstream: ServerProcess
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    tmp = tmp_path_factory.mktemp("pair")
    # A prefix of their own: other suites (and deployments) share this Redis.
    env = base_env(SLUICE_REDIS_URL=REDIS_URL, SLUICE_REDIS_PREFIX=f"test-{new_key()}")
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


# -- the shared log itself, in-process (same Redis, a prefix per test) ---------------


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"test-{new_key()}"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    async for key in client.scan_iter(match=f"{name}:*"):
        await client.delete(key)
    await client.aclose()


def logs(prefix: str, instance: str | None = None) -> RedisEventLogs:
    return RedisEventLogs(REDIS_URL, retention_seconds=60, prefix=prefix, instance=instance)


def meta_of(stream_id: str) -> StreamMeta:
    return StreamMeta(stream_id, "sim", 0, False, format="chat")


async def read(
    reader: RedisEventLogs, meta: StreamMeta, **options: Any
) -> tuple[list[Event], bool]:
    """Every event until the stream ends (a hang fails the test after 10 s)."""
    events: list[Event] = []
    async with asyncio.timeout(10):
        async for entry in reader.entries(meta, **options):
            events += entry.events
            if entry.end:
                return events, True
    return events, False


async def test_keys_and_channel_live_under_the_deployment_prefix(prefix: str) -> None:
    owner = logs(prefix)
    owner.begin(meta_of("s1"))
    owner.publish("s1", 1, [RoleStart(), TextDelta("hi")])
    owner.publish("s1", 3, [], end=True)
    await owner.flush()
    client = redis.Redis.from_url(REDIS_URL)
    keys = {k.decode() async for k in client.scan_iter(match=f"{prefix}:*")}
    assert keys == {
        f"{prefix}:stream:s1",
        f"{prefix}:stream:s1:meta",
        f"{prefix}:instance:{owner.instance}",
    }
    assert await client.exists("sluice:stream:s1") == 0
    # Stop requests travel on the prefixed channel.
    pubsub = client.pubsub()
    await pubsub.subscribe(f"{prefix}:cancel")
    await owner.request_cancel("s1")
    async with asyncio.timeout(5):
        while (message := await pubsub.get_message(timeout=1)) is None or (
            message["type"] != "message"
        ):
            pass
    assert message["data"] == b"s1"
    await pubsub.aclose()
    await client.aclose()
    read_meta = await owner.meta("s1")
    assert read_meta is not None and read_meta.instance == owner.instance
    await owner.aclose()


async def test_a_dead_instances_stream_ends_incomplete_for_its_resumer(prefix: str) -> None:
    owner, reader = logs(prefix), logs(prefix)
    owner.begin(meta_of("s1"))
    owner.publish("s1", 1, [RoleStart(), TextDelta("half an ")])
    owner.publish("s1", 3, [TextDelta("answer")])
    await owner.flush()
    meta = await reader.meta("s1")
    assert meta is not None and await reader.alive(meta)
    # Alive and silent: the resumer keeps waiting.
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1):
            async for _ in reader.entries(meta, block_ms=100, quiet_seconds=0):
                pass
    # The owner dies without a word: its lease lapses.
    client = redis.Redis.from_url(REDIS_URL)
    await client.delete(owner.lease_key(owner.instance))
    await client.aclose()
    assert not await reader.alive(meta)
    events, ended = await read(reader, meta, block_ms=100, quiet_seconds=0)
    assert ended
    assert events == [
        RoleStart(),
        TextDelta("half an "),
        TextDelta("answer"),
        Finish("incomplete", 0),
    ]
    # A lease held, then given back at once on close.
    owner.hold_lease()
    await asyncio.sleep(0.2)
    assert await reader.alive(meta)
    await owner.aclose()
    assert not await reader.alive(meta)
    await reader.aclose()


async def test_a_batch_written_twice_is_read_once_and_a_gap_ends_the_stream(
    prefix: str,
) -> None:
    owner, reader = logs(prefix), logs(prefix)
    owner.begin(meta_of("s1"))
    owner.publish("s1", 1, [RoleStart(), TextDelta("a")])
    owner.publish("s1", 1, [RoleStart(), TextDelta("a")])  # a retried pipeline
    owner.publish("s1", 3, [TextDelta("b"), Finish("stop", 0)])
    owner.publish("s1", 5, [], end=True)
    owner.begin(meta_of("s2"))
    owner.publish("s2", 1, [RoleStart(), TextDelta("a")])
    owner.publish("s2", 7, [TextDelta("much later")])  # 3..6 never arrived
    await owner.flush()
    one = await reader.meta("s1")
    two = await reader.meta("s2")
    assert one is not None and two is not None
    assert await read(reader, one) == (
        [RoleStart(), TextDelta("a"), TextDelta("b"), Finish("stop", 0)],
        True,
    )
    assert await read(reader, two) == (
        [RoleStart(), TextDelta("a"), Finish("incomplete", 0)],
        True,
    )
    await owner.aclose()
    await reader.aclose()


async def test_redis_down_on_a_request_path_is_a_503() -> None:
    gone = RedisEventLogs(f"redis://127.0.0.1:{free_port()}/0", retention_seconds=60)
    meta = meta_of("s1")
    calls = [
        gone.meta("s1"),
        gone.alive(StreamMeta("s1", "sim", 0, False, instance="x")),
        gone.request_cancel("s1"),
        anext(gone.entries(meta)),
    ]
    for call in calls:
        with pytest.raises(Unavailable) as caught:
            await call
        assert caught.value.status == 503 and caught.value.retry_after
    await gone.aclose()


async def test_the_sweep_marks_only_answers_whose_instance_is_gone(
    prefix: str, tmp_path: Path
) -> None:
    store = SQLStore(create_engine(database_url(None, tmp_path)))
    await migrate(store.engine)
    conversation = await store.create_conversation(owner="anonymous", title="t")
    alive, dead = logs(prefix, "alive-one"), logs(prefix, "dead-one")
    for shared, stream_id in ((alive, "s-alive"), (dead, "s-dead")):
        shared.begin(meta_of(stream_id))
        await shared.flush()
    client = redis.Redis.from_url(REDIS_URL)
    await client.delete(dead.lease_key("dead-one"))
    await client.aclose()
    now = time.time()
    answers = {  # stream id -> seconds since the saver last touched it
        "s-alive": 60,
        "s-dead": 15,
        "s-dead-fresh": 1,
        "s-orphan-old": 40,
        "s-orphan-young": 15,
    }
    ids = {}
    for stream_id, age in answers.items():
        ids[stream_id] = new_key()
        await store.add_message(
            Message(
                ids[stream_id], conversation.id, None, "assistant", "part",
                status="streaming", stream_id=stream_id,
            )
        )  # fmt: skip
        async with store.engine.begin() as connection:
            await connection.execute(
                update(messages).where(messages.c.id == ids[stream_id]).values(updated_at=now - age)
            )
    # s-dead-fresh has no metadata either: touched a second ago, it is left alone.
    assert await Recovery(store, alive).sweep() == 2
    status = {sid: (await store.message(mid)).status for sid, mid in ids.items()}
    assert status == {
        "s-alive": "streaming",
        "s-dead": "incomplete",
        "s-dead-fresh": "streaming",
        "s-orphan-old": "incomplete",
        "s-orphan-young": "streaming",
    }
    # Cut by a dead instance, not stopped by anyone: told apart from a user's Stop.
    assert (await store.message(ids["s-dead"])).finish_reason == "interrupted"
    await alive.aclose()
    await dead.aclose()
    await store.aclose()
