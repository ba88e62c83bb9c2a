"""Redis going away and coming back, on a redis-server of the test's own (never the
shared one on 6379): requests that need it get a 503 with an OpenAI body and
Retry-After, memory stays bounded while streams run on, service resumes without a
restart when Redis is back; and a stream whose instance is SIGKILLed ends for its
resumer on another instance, as ``incomplete``, in the store too."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis as sync_redis

from sluice.errors import Unavailable
from sluice.events import Event, Finish, RoleStart, TextDelta
from sluice.store.shared_log import REDIS_ERRORS, RedisEventLogs, StreamMeta
from sluice.wire.sse import SSEDecoder
from tests.chat_client import chat
from tests.databases import postgres_database
from tests.faults import new_key
from tests.servers import ServerProcess, base_env, free_port, running

MASTER = "sk-master-" + "o" * 24


class RedisServer:
    """A redis-server on a free port, to kill and start again on the same port."""

    def __init__(self, tmp: Path, *, keep_data: bool = False) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._tmp = tmp
        # Kept across a kill only with an append-only file written on every command.
        self._persistence = ["--appendonly", "yes", "--appendfsync", "always"]
        if not keep_data:
            self._persistence = ["--appendonly", "no"]
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--dir", str(self._tmp), *self._persistence]
        with (self._tmp / f"redis-{self.port}.log").open("ab") as log:
            self._process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        client = sync_redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except sync_redis.ConnectionError:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait()


@contextmanager
def own_redis(tmp: Path, *, keep_data: bool = False) -> Iterator[RedisServer]:
    server = RedisServer(tmp, keep_data=keep_data)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def meta_of(stream_id: str) -> StreamMeta:
    return StreamMeta(stream_id, "sim", 0, False)


async def read(reader: RedisEventLogs, meta: StreamMeta) -> list[Event]:
    events: list[Event] = []
    async with asyncio.timeout(10):
        async for entry in reader.entries(meta, block_ms=100):
            events += entry.events
            if entry.end:
                return events
    raise AssertionError("unreachable")


async def test_the_mirror_queue_stays_bounded_and_lost_streams_end_cleanly(
    tmp_path: Path,
) -> None:
    with own_redis(tmp_path, keep_data=True) as server:
        prefix = f"test-{new_key()}"
        owner = RedisEventLogs(
            server.url,
            retention_seconds=60,
            prefix=prefix,
            max_pending_batches=50,
            max_pending_bytes=8192,
        )
        reader = RedisEventLogs(server.url, retention_seconds=60, prefix=prefix)
        owner.begin(meta_of("long"))
        owner.publish("long", 1, [RoleStart(), TextDelta("before ")])
        await owner.flush()
        server.kill()
        # A short stream begins and ends during the outage; a long one runs on and on.
        owner.begin(meta_of("short"))
        owner.publish("short", 1, [RoleStart(), TextDelta("kept whole")])
        owner.publish("short", 3, [Finish("stop", 0)])
        owner.publish("short", 4, [], end=True)
        for n in range(2000):
            owner.publish("long", 3 + n, [TextDelta("more text " * 2)])
            batches, size = owner.pending
            assert batches <= 50 and size <= 8192
        assert owner.pending[0] == 3  # the finished stream's: dropping those frees nothing
        with pytest.raises(Unavailable):
            await reader.meta("long")
        server.start()
        async with asyncio.timeout(10):
            while True:
                try:
                    await owner.flush()
                    break
                except REDIS_ERRORS:
                    await asyncio.sleep(0.1)
        long = await reader.meta("long")
        short = await reader.meta("short")
        assert long is not None and long.lost
        assert short is not None and not short.lost
        # No gap shown, no hang: what reached Redis, then the end of an interrupted answer.
        assert await read(reader, long) == [
            RoleStart(),
            TextDelta("before "),
            Finish("incomplete", 0),
        ]
        assert await read(reader, short) == [
            RoleStart(),
            TextDelta("kept whole"),
            Finish("stop", 0),
        ]
        # The lost stream's later writes are ignored, and its end forgets it.
        owner.publish("long", 9000, [TextDelta("late")])
        owner.publish("long", 9001, [], end=True)
        assert owner.pending == (0, 0)
        await owner.aclose()
        await reader.aclose()


# -- whole gateways -------------------------------------------------------------------


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def error_of(response: aiohttp.ClientResponse) -> dict[str, Any]:
    """A 503 with Retry-After and an OpenAI-shaped body."""
    assert response.status == 503, await response.text()
    assert int(response.headers["Retry-After"]) >= 1
    body: dict[str, Any] = await response.json()
    assert set(body["error"]) == {"message", "type", "param", "code", "request_id"}
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    return body


async def quiet(server: ServerProcess) -> None:
    """Until nothing runs and nothing is retained (and memory was given back)."""
    async with aiohttp.ClientSession() as session:
        async with asyncio.timeout(60):
            while True:
                async with session.get(server.url + "/health/live") as response:
                    streams = (await response.json())["streams"]
                if streams == {"running": 0, "retained": 0}:
                    break
                await asyncio.sleep(0.2)
    await asyncio.sleep(1.5)  # the gateway trims a second after it goes quiet


async def flood(server: ServerProcess, streams: int) -> None:
    """Detached answers of 8 choices x 20,000 tokens, unpaced: about 20,000 batches
    (10 MB) each for the shared log."""
    body = {
        "model": "sim",
        "n": 8,
        "stream": True,
        "messages": [{"role": "user", "content": "flood"}],
        "sim": {"tokens_per_second": 0, "length": 20000, "ttft_ms": 0},
    }
    headers = {**auth(MASTER), "X-Sluice-On-Disconnect": "detach"}
    async with aiohttp.ClientSession() as session:
        for _ in range(streams):
            async with session.post(
                server.url + "/v1/chat/completions", json=body, headers=headers
            ) as response:
                assert response.status == 200
    await quiet(server)


async def start_detached(
    session: aiohttp.ClientSession, url: str, tokens_per_second: float = 20
) -> str:
    body = {
        "model": "sim",
        "stream": True,
        "messages": [{"role": "user", "content": "a slow one"}],
        "sim": {"tokens_per_second": tokens_per_second, "length": 150},
    }
    headers = {**auth(MASTER), "X-Sluice-On-Disconnect": "detach"}
    async with session.post(url + "/v1/chat/completions", json=body, headers=headers) as r:
        assert r.status == 200
        return r.headers["x-sluice-stream-id"]


async def start_turn(session: aiohttp.ClientSession, url: str, message: str) -> dict[str, Any]:
    body = {
        "message": message,
        "model": "sim",
        "options": {"sim": {"tokens_per_second": 40, "length": 200}},
    }
    async with session.post(url + "/chat", json=body, headers=auth(MASTER)) as response:
        assert response.status == 200
        decoder = SSEDecoder()
        async for piece in response.content.iter_any():
            for event in decoder.feed(piece):
                frame: dict[str, Any] = json.loads(event.data)
                if frame["type"] == "start":
                    return frame
    raise AssertionError("no start frame")


@pytest.fixture
def config(tmp_path: Path, gateway_config: Path) -> Path:
    # Finished answers are forgotten soon, so memory can be compared between bursts.
    path = tmp_path / "gateway.toml"
    path.write_text("stream_retention_seconds = 2\n" + gateway_config.read_text())
    return path


@pytest.mark.slow
async def test_redis_outage_fails_closed_and_recovers(tmp_path: Path, config: Path) -> None:
    with own_redis(tmp_path) as redis_server:
        env = base_env(
            SLUICE_REDIS_URL=redis_server.url,
            SLUICE_REDIS_PREFIX=f"test-{new_key()}",
            SLUICE_MASTER_KEY=MASTER,
        )
        args = ["serve", "--config", str(config)]
        with (
            running(args, tmp_path, name="a", env=env) as first,
            running(args, tmp_path, name="b", env=env) as second,
        ):
            await outage(redis_server, first, second)
        log = first.output()
    # Each background task logs the outage once, not once per retry.
    assert log.count("shared event log: writing to Redis: failing") == 1, log
    assert log.count("renewing this instance's lease: failing") == 1, log
    assert "shared event log: writing to Redis: working again" in log


async def outage(redis_server: RedisServer, first: ServerProcess, second: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            first.url + "/v1/admin/keys",
            json={"name": "limited", "rpm": 600, "max_concurrent": 4},
            headers=auth(MASTER),
        ) as response:
            assert response.status == 200, await response.text()
            limited = (await response.json())["key"]
        completion = {"model": "sim", "messages": [{"role": "user", "content": "hi"}]}

        async def limited_call() -> aiohttp.ClientResponse:
            return await session.post(
                first.url + "/v1/chat/completions", json=completion, headers=auth(limited)
            )

        async with await limited_call() as response:
            assert response.status == 200
        async with session.post(first.url + "/v1/session", json={"key": limited}) as response:
            assert response.status == 200
            cookie = {"Cookie": f"sluice_session={response.cookies['sluice_session'].value}"}
        async with session.get(first.url + "/v1/conversations", headers=cookie) as response:
            assert response.status == 200

        await flood(first, 8)  # the baseline has seen the same burst, mirrored
        baseline = rss_kb(first.pid)
        stream_id = await start_detached(session, first.url)
        turns = [await start_turn(session, first.url, f"before {n}") for n in range(2)]

        # A resume on the other instance, under way when Redis goes.
        resumed = await session.get(f"{second.url}/v1/streams/{stream_id}", headers=auth(MASTER))
        assert resumed.status == 200
        decoder = SSEDecoder()
        records: list[str] = []
        while len(records) < 3:
            records += [e.data for e in decoder.feed(await resumed.content.readany())]

        redis_server.kill()
        # It ends with an in-band error the client may retry, not a broken connection.
        async with asyncio.timeout(15):
            async for piece in resumed.content.iter_any():
                records += [e.data for e in decoder.feed(piece)]
        resumed.close()
        assert "[DONE]" not in records
        assert json.loads(records[-1])["error"]["code"] == "service_unavailable"
        async with await limited_call() as response:
            await error_of(response)
        async with session.get(
            f"{second.url}/v1/streams/{stream_id}", headers=auth(MASTER)
        ) as response:
            await error_of(response)
        async with session.post(
            f"{second.url}/v1/streams/{stream_id}/cancel", headers=auth(MASTER)
        ) as response:
            await error_of(response)
        async with session.get(first.url + "/v1/conversations", headers=cookie) as response:
            await error_of(response)
        async with session.get(first.url + "/health/ready", headers=auth(MASTER)) as response:
            assert response.status == 503
        # Answers that need no Redis keep streaming, and memory stays bounded: about
        # 80 MB of writes (160,000 batches) for the shared log, which keeps at most
        # 10,000 batches. (Unbounded, the same burst grew the process by ~800 MB; what
        # is left is the allocator's noise.)
        turns += [await start_turn(session, first.url, f"during {n}") for n in range(2)]
        await flood(first, 8)
        grown_mb = (rss_kb(first.pid) - baseline) / 1024
        assert grown_mb < 150, f"RSS grew {grown_mb:.0f} MB during the outage"

        redis_server.start()
        async with asyncio.timeout(20):
            while True:
                async with await limited_call() as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(0.25)
        async with session.post(first.url + "/v1/session", json={"key": limited}) as response:
            assert response.status == 200
            cookie = {"Cookie": f"sluice_session={response.cookies['sluice_session'].value}"}
        async with session.get(first.url + "/v1/conversations", headers=cookie) as response:
            assert response.status == 200
        # Streams resume across instances again (once the owner's writes caught up).
        fresh = await start_detached(session, first.url, tokens_per_second=50)
        async with asyncio.timeout(15):
            while True:
                async with session.get(
                    f"{second.url}/v1/streams/{fresh}", headers=auth(MASTER)
                ) as response:
                    if response.status != 404:
                        assert response.status == 200
                        assert (await response.read()).endswith(b"data: [DONE]\n\n")
                        break
                await asyncio.sleep(0.2)
        # Nothing the outage touched was lost: every answer is complete in the store.
        for turn in turns:
            url = f"{first.url}/v1/conversations/{turn['conversation_id']}"
            async with session.get(url, headers=auth(MASTER)) as response:
                answer = (await response.json())["messages"][-1]
            assert answer["id"] == turn["message_id"]
            assert answer["status"] == "complete", answer
            assert answer["finish_reason"] == "stop" and answer["content"]


@pytest.fixture
async def shared_store() -> AsyncIterator[str]:
    async with postgres_database() as url:
        yield url


@pytest.mark.slow
async def test_a_killed_instances_stream_ends_for_its_resumer_and_in_the_store(
    tmp_path: Path, gateway_config: Path, shared_store: str
) -> None:
    with own_redis(tmp_path) as redis_server:
        env = base_env(
            SLUICE_REDIS_URL=redis_server.url,
            SLUICE_REDIS_PREFIX=f"test-{new_key()}",
            SLUICE_DATABASE_URL=shared_store,
        )
        args = ["serve", "--config", str(gateway_config)]
        with (
            running(args, tmp_path, name="doomed", env=env) as doomed,
            running(args, tmp_path, name="survivor", env=env) as survivor,
        ):
            body = {
                "message": "a long answer, please",
                "model": "sim",
                "options": {"sim": {"tokens_per_second": 20, "length": 400}},
            }
            # Long enough in that the saver has written some of it.
            cut = await chat(doomed.url, body, stop_after=40)
            last = max(int(e.id) for e in cut.events if e.id)
            stream_id = cut.start["stream_id"]
            # The mirror trails by ~10 ms: let it hold all the client saw, then kill.
            await asyncio.sleep(0.2)
            doomed.stop(signal.SIGKILL)

            async with aiohttp.ClientSession() as session:
                # No hang: the resume ends once the dead instance's lease is gone.
                async with asyncio.timeout(25):
                    async with session.get(
                        f"{survivor.url}/v1/streams/{stream_id}", params={"after": str(last)}
                    ) as response:
                        assert response.status == 200
                        decoder = SSEDecoder()
                        rest = []
                        async for piece in response.content.iter_any():
                            rest += decoder.feed(piece)
                frames = [json.loads(e.data) for e in rest]
                done = frames[-1]
                assert done["type"] == "done" and done["finish_reason"] == "incomplete"
                text = "".join(f["content"] for f in frames if f["type"] == "content")
                assert cut.text and done["content"] == cut.text + text

                # Stopping it elsewhere answers at once: it is over.
                async with asyncio.timeout(5):
                    async with session.post(
                        f"{survivor.url}/v1/streams/{stream_id}/cancel"
                    ) as response:
                        assert response.status == 200
                        assert (await response.json())["status"] == "cancelled"

                # The stored answer becomes incomplete, with no restart.
                url = f"{survivor.url}/v1/conversations/{cut.start['conversation_id']}"
                async with asyncio.timeout(45):
                    while True:
                        async with session.get(url) as reply:
                            answer = (await reply.json())["messages"][-1]
                        if answer["status"] != "streaming":
                            break
                        await asyncio.sleep(0.5)
            assert answer["id"] == cut.start["message_id"]
            assert answer["status"] == "incomplete"
            assert answer["finish_reason"] == "interrupted"  # not a user's Stop
            assert answer["content"] and done["content"].startswith(answer["content"])
