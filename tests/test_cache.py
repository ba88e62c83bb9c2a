"""The response cache and request coalescing against running gateways and a real
`sluice sim` upstream that counts its calls (per ``sim.key``)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as redis

from tests.conftest import GATEWAY_CONFIG
from tests.faults import new_key, upstream_saw
from tests.servers import ServerProcess, base_env, running

MASTER = "sk-master-" + "c" * 24


def _config(tmp: Path, upstream: ServerProcess, head: str) -> Path:
    path = tmp / "cache.toml"
    body = GATEWAY_CONFIG.format(upstream=upstream.url, dead_port=1, blackhole_port=1)
    path.write_text(head + "\n" + body)
    return path


@pytest.fixture(scope="module")
def cached(
    tmp_path_factory: pytest.TempPathFactory, upstream: ServerProcess
) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("cached")
    config = _config(tmp, upstream, 'cache = "memory"')
    env = base_env(SLUICE_DATA_DIR=str(tmp / "data"))
    with running(["serve", "--config", str(config)], tmp, name="cached", env=env) as server:
        yield server


def body(key: str, *, stream: bool = True, **sim: Any) -> dict[str, Any]:
    options = {"key": key, "ttft_ms": 0, "tokens_per_second": 400, "length": 30, **sim}
    request: dict[str, Any] = {
        "model": "relay",
        "temperature": 0,
        "messages": [{"role": "user", "content": f"Tell me about caching {key}"}],
        "sim": options,
    }
    if stream:
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
    return request


class Answer:
    def __init__(self, status: int, headers: Any, chunks: list[dict[str, Any]], raw: bytes) -> None:
        self.status = status
        self.headers = headers
        self.chunks = chunks
        self.raw = raw

    @property
    def cache(self) -> str | None:
        value: str | None = self.headers.get("x-sluice-cache")
        return value

    @property
    def text(self) -> str:
        if not self.chunks:  # not streamed
            content: str = orjson.loads(self.raw)["choices"][0]["message"]["content"]
            return content
        return "".join(
            c["choices"][0]["delta"].get("content") or "" for c in self.chunks if c.get("choices")
        )

    @property
    def usage(self) -> dict[str, Any]:
        if not self.chunks:
            usage: dict[str, Any] = orjson.loads(self.raw)["usage"]
            return usage
        return next(c["usage"] for c in self.chunks if c.get("usage"))

    @property
    def finish(self) -> str | None:
        reasons = [
            c["choices"][0]["finish_reason"]
            for c in self.chunks
            if c.get("choices") and c["choices"][0]["finish_reason"]
        ]
        return reasons[-1] if reasons else None


async def ask(
    server: ServerProcess,
    request: dict[str, Any],
    headers: dict[str, str] | None = None,
    *,
    leave_after: int | None = None,
    leave: asyncio.Event | None = None,
    started: asyncio.Event | None = None,
) -> Answer:
    """One request; after ``leave_after`` chunks, or at the first line after ``leave``
    is set, the client disconnects. ``started`` is set at the first chunk."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            server.url + "/v1/chat/completions", json=request, headers=headers or {}
        ) as response,
    ):
        if not request.get("stream"):
            return Answer(response.status, response.headers, [], await response.read())
        chunks: list[dict[str, Any]] = []
        raw = b""
        async for line in response.content:
            raw += line
            if line.startswith(b"data: {"):
                chunks.append(orjson.loads(line[6:]))
                task = asyncio.current_task()
                if task is not None:
                    _STARTED[id(task)] = chunks
                if started is not None:
                    started.set()
                if leave_after is not None and len(chunks) >= leave_after:
                    break
                if leave is not None and leave.is_set():
                    break
        return Answer(response.status, response.headers, chunks, raw)


async def test_the_same_deterministic_request_twice_calls_the_upstream_once(
    cached: ServerProcess, upstream: ServerProcess
) -> None:
    key = new_key()
    first = await ask(cached, body(key))
    second = await ask(cached, body(key))
    assert (first.cache, second.cache) == ("miss", "hit")
    assert second.text == first.text and len(first.text) > 20
    assert second.finish == "stop"
    assert first.usage.get("cached") is None and second.usage["cached"] is True
    assert second.usage["completion_tokens"] == first.usage["completion_tokens"]
    # A non-streamed request is the same request: the stored completion.
    whole = await ask(cached, body(key, stream=False))
    assert whole.cache == "hit" and whole.text == first.text
    assert upstream_saw(upstream, key)["attempts"] == 1


async def test_paced_replay_takes_the_original_time(
    cached: ServerProcess, upstream: ServerProcess
) -> None:
    key = new_key()
    started = time.monotonic()
    first = await ask(cached, body(key, tokens_per_second=60))
    took = time.monotonic() - started
    assert took > 0.4
    started = time.monotonic()
    immediate = await ask(cached, body(key, tokens_per_second=60))
    assert immediate.cache == "hit" and time.monotonic() - started < took / 2
    started = time.monotonic()
    paced = await ask(cached, body(key, tokens_per_second=60), {"X-Sluice-Cache-Replay": "paced"})
    assert paced.cache == "hit" and paced.text == first.text
    assert time.monotonic() - started > took * 0.7
    assert upstream_saw(upstream, key)["attempts"] == 1
    bad = await ask(cached, body(key), {"X-Sluice-Cache-Replay": "slowly"})
    assert bad.status == 400
    assert b"X-Sluice-Cache-Replay" in bad.raw


async def test_cache_control_and_eligibility(
    cached: ServerProcess, upstream: ServerProcess
) -> None:
    key = new_key()
    assert (await ask(cached, body(key))).cache == "miss"
    assert (await ask(cached, body(key), {"Cache-Control": "no-store"})).cache == "bypass"
    assert (await ask(cached, body(key), {"Cache-Control": "no-cache"})).cache == "refresh"
    assert (await ask(cached, body(key))).cache == "hit"
    assert upstream_saw(upstream, key)["attempts"] == 3
    # Not deterministic: not cached, unless the request asks.
    sampled = {**body(key), "temperature": 0.8}
    assert (await ask(cached, sampled)).cache == "bypass"
    assert (await ask(cached, sampled, {"Cache-Control": "max-age=60"})).cache == "miss"
    assert (await ask(cached, sampled, {"Cache-Control": "max-age=60"})).cache == "hit"
    assert upstream_saw(upstream, key)["attempts"] == 5
    bad = await ask(cached, body(key), {"Cache-Control": "max-age=soon"})
    assert bad.status == 400 and b"max-age" in bad.raw


async def test_errors_and_cut_answers_are_not_cached(
    cached: ServerProcess, upstream: ServerProcess
) -> None:
    key = new_key()
    failing = body(key, fail_status=400)
    for _ in range(2):
        answer = await ask(cached, failing)
        assert answer.status == 400
    assert upstream_saw(upstream, key)["attempts"] == 2
    # The only client leaves mid-answer: the answer is cancelled, so nothing is stored.
    key = new_key()
    slow = body(key, tokens_per_second=40, length=60)
    left = await ask(cached, slow, leave_after=3)
    assert left.cache == "miss"
    await _until(lambda: upstream_saw(upstream, key)["disconnected"] == 1)
    again = await ask(cached, slow)
    assert again.cache == "miss" and again.finish == "stop"
    assert upstream_saw(upstream, key)["attempts"] == 2


async def test_a_hundred_identical_requests_share_one_generation(
    cached: ServerProcess, upstream: ServerProcess
) -> None:
    key = new_key()
    request = body(key, tokens_per_second=40, length=40)
    leader = asyncio.create_task(ask(cached, request))
    await _until(lambda: upstream_saw(upstream, key)["attempts"] == 1)
    answers = await asyncio.gather(*(ask(cached, request) for _ in range(99)))
    first = await leader
    assert all(a.status == 200 and a.finish == "stop" for a in answers)
    assert {a.text for a in answers} == {first.text}
    coalesced = [a for a in answers if a.headers.get("x-sluice-coalesced") == "true"]
    hits = [a for a in answers if a.cache == "hit"]
    assert len(coalesced) + len(hits) == 99 and len(coalesced) > 50
    assert upstream_saw(upstream, key)["attempts"] == 1


async def test_a_follower_leaving_does_not_cut_the_others(
    cached: ServerProcess, upstream: ServerProcess
) -> None:
    key = new_key()
    request = body(key, tokens_per_second=40, length=40)
    leave, following = asyncio.Event(), asyncio.Event()
    leader = asyncio.create_task(ask(cached, request, leave=leave))
    await _until(lambda: upstream_saw(upstream, key)["attempts"] == 1)
    follower = asyncio.create_task(ask(cached, request, started=following))
    await following.wait()
    leave.set()
    gone = await leader
    assert gone.finish is None  # it left mid-answer
    follower = await follower
    assert follower.headers.get("x-sluice-coalesced") == "true"
    assert follower.finish == "stop" and len(follower.text) > 50
    seen = upstream_saw(upstream, key)
    assert (seen["attempts"], seen["completed"], seen["disconnected"]) == (1, 1, 0)
    # Everyone leaves: then the upstream call is cancelled.
    key = new_key()
    request = body(key, tokens_per_second=20, length=200)
    both = [asyncio.create_task(ask(cached, request, leave_after=n)) for n in (2, 4)]
    await asyncio.gather(*both)
    await _until(lambda: upstream_saw(upstream, key)["disconnected"] == 1)
    assert upstream_saw(upstream, key)["completed"] == 0


async def test_chat_api_uses_the_cache_and_marks_cached_answers(
    cached: ServerProcess, upstream: ServerProcess
) -> None:
    key = new_key()
    options = {"temperature": 0, "sim": {"key": key, "ttft_ms": 0, "length": 20}}
    question = f"What is a cache? {key}"
    first = await _chat(cached, {"model": "relay", "message": question, "options": options})
    second = await _chat(cached, {"model": "relay", "message": question, "options": options})
    assert (first["cache"], second["cache"]) == ("miss", "hit")
    assert second["text"] == first["text"] and len(first["text"]) > 20
    assert second["usage"]["cached"] is True
    assert first["usage"]["cached"] is False
    path = f"/v1/conversations/{second['conversation_id']}"
    for _ in range(200):  # the answer is saved just after its last frame went out
        answer = (await _get(cached, path))["messages"][-1]
        if answer["status"] != "streaming":
            break
        await asyncio.sleep(0.02)
    assert answer["content"] == first["text"], answer
    assert answer["usage"]["cached"] is True
    # A regenerate is a fresh answer, never the cached one again.
    again = await _chat(cached, {"conversation_id": second["conversation_id"], "regenerate": True})
    assert again["cache"] == "refresh"
    assert upstream_saw(upstream, key)["attempts"] == 2
    # Stateless turns too.
    messages = [{"role": "user", "content": question}]
    turn = {"model": "relay", "messages": messages, "options": options}
    assert (await _chat(cached, turn))["cache"] == "hit"


async def test_admin_stats_and_clear(cached: ServerProcess) -> None:
    # An open gateway has no master key: the cache's admin API is refused.
    async with (
        aiohttp.ClientSession() as session,
        session.get(cached.url + "/v1/admin/cache") as response,
    ):
        assert response.status == 403


# -- several instances on one Redis, per-key scope, limits -------------------------------


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, upstream: ServerProcess
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    tmp = tmp_path_factory.mktemp("pair")
    prefix = "sluice-cache-" + secrets.token_hex(4)
    config = _config(tmp, upstream, 'cache = "redis"')
    env = base_env(
        SLUICE_REDIS_URL="redis://127.0.0.1:6379/0",
        SLUICE_REDIS_PREFIX=prefix,
        SLUICE_MASTER_KEY=MASTER,
        SLUICE_DATA_DIR=str(tmp / "data"),
    )
    args = ["serve", "--config", str(config)]
    try:
        with (
            running(args, tmp, name="one", env=env) as one,
            running(args, tmp, name="two", env=env) as two,
        ):
            yield one, two
    finally:
        asyncio.run(_drop_prefix(prefix))


async def _drop_prefix(prefix: str) -> None:
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def _new_key(server: ServerProcess, **limits: Any) -> dict[str, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            server.url + "/v1/admin/keys",
            json={"name": "cache-" + new_key(), **limits},
            headers={"Authorization": f"Bearer {MASTER}"},
        ) as response,
    ):
        assert response.status == 200, await response.text()
        created = await response.json()
    return {"Authorization": f"Bearer {created['key']}"}


async def test_a_second_instance_serves_the_first_ones_answer(
    pair: tuple[ServerProcess, ServerProcess], upstream: ServerProcess
) -> None:
    one, two = pair
    alice = await _new_key(one)
    key = new_key()
    first = await ask(one, body(key), alice)
    second = await ask(two, body(key), alice)
    assert (first.cache, second.cache) == ("miss", "hit")
    assert second.text == first.text
    # Another key's identical request misses: the cache is per key by default.
    bob = await _new_key(one)
    assert (await ask(two, body(key), bob)).cache == "miss"
    assert upstream_saw(upstream, key)["attempts"] == 2


async def test_coalescing_across_instances(
    pair: tuple[ServerProcess, ServerProcess], upstream: ServerProcess
) -> None:
    one, two = pair
    alice = await _new_key(one)
    key = new_key()
    request = body(key, tokens_per_second=40, length=40)
    leader = asyncio.create_task(ask(one, request, alice))
    await _until(lambda: upstream_saw(upstream, key)["attempts"] == 1)
    follower = await ask(two, request, alice)
    first = await leader
    assert follower.headers.get("x-sluice-coalesced") == "true"
    assert follower.text == first.text and follower.finish == "stop"
    assert upstream_saw(upstream, key)["attempts"] == 1


async def test_a_hit_is_not_charged_tokens_but_counts_as_a_request(
    pair: tuple[ServerProcess, ServerProcess], upstream: ServerProcess
) -> None:
    one, two = pair
    limited = await _new_key(one, tpm=400, rpm=6)
    key = new_key()
    request = {**body(key), "max_tokens": 300}
    assert (await ask(one, request, limited)).cache == "miss"
    # Charged again, 300+ tokens would pass the 400 per minute; a hit spends none.
    for _ in range(4):
        answer = await ask(two, request, limited)
        assert (answer.status, answer.cache) == (200, "hit")
    # Requests per minute still apply to hits.
    answer = await ask(one, request, limited)
    assert answer.status == 200
    refused = await ask(one, request, limited)
    assert refused.status == 429 and b"requests per minute" in refused.raw
    assert upstream_saw(upstream, key)["attempts"] == 1


async def test_admin_api_and_cli(pair: tuple[ServerProcess, ServerProcess]) -> None:
    one, _ = pair
    master = {"Authorization": f"Bearer {MASTER}"}
    alice = await _new_key(one)
    await ask(one, body(new_key()), alice)
    stats = await _get(one, "/v1/admin/cache", master)
    assert stats["backend"] == "redis" and stats["entries"] >= 1 and stats["misses"] >= 1
    assert (await _get_status(one, "/v1/admin/cache", alice)) == 403
    async with (
        aiohttp.ClientSession() as session,
        session.delete(one.url + "/v1/admin/cache?model=sim", headers=master) as response,
    ):
        assert (await response.json())["removed"] == 0
    result = await _sluice(["cache", "stats", "--url", one.url], SLUICE_MASTER_KEY=MASTER)
    assert result[0] == 0 and "entries" in result[1] and "hits" in result[1]
    result = await _sluice(["cache", "clear", "--url", one.url], SLUICE_MASTER_KEY=MASTER)
    assert result[0] == 0 and result[1].startswith("removed ")
    assert (await _get(one, "/v1/admin/cache", master))["entries"] == 0
    refused = await _sluice(["cache", "stats", "--url", one.url])
    assert refused[0] == 1 and "master key" in refused[2]


async def test_cli_in_process_on_the_database_backend(
    tmp_path: Path, upstream: ServerProcess
) -> None:
    config = _config(tmp_path, upstream, 'cache = "database"')
    env = base_env(SLUICE_DATA_DIR=str(tmp_path / "data"))
    with running(["serve", "--config", str(config)], tmp_path, name="db", env=env) as server:
        key = new_key()
        assert (await ask(server, body(key))).cache == "miss"
        # Until the answer is stored, an identical request follows the finished one.
        for _ in range(100):
            again = await ask(server, body(key))
            if again.cache == "hit":
                break
            assert again.headers.get("x-sluice-coalesced") == "true"
        assert again.cache == "hit"
        assert upstream_saw(upstream, key)["attempts"] == 1
    data = ["--config", str(config), "--data-dir", str(tmp_path / "data")]
    code, out, _ = await _sluice(["cache", "stats", *data])
    assert code == 0 and "entries      1" in out
    code, out, _ = await _sluice(["cache", "clear", "--model", "relay", *data])
    assert (code, out.strip()) == (0, "removed 1 cached answer")
    code, _, err = await _sluice(["cache", "stats", "--data-dir", str(tmp_path / "data")])
    assert code == 2 and "the response cache is off" in err


# -- helpers ----------------------------------------------------------------------------


async def _until(condition: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def _chat(server: ServerProcess, turn: dict[str, Any]) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.url + "/chat", json=turn) as response,
    ):
        assert response.status == 200, await response.text()
        text, usage, conversation = "", None, None
        async for line in response.content:
            if not line.startswith(b"data: "):
                continue
            frame = orjson.loads(line[6:])
            if frame["type"] == "start":
                conversation = frame.get("conversation_id")
            elif frame["type"] == "content":
                text += frame["content"]
            elif frame["type"] == "usage":
                usage = frame
        return {
            "cache": response.headers.get("x-sluice-cache"),
            "text": text,
            "usage": usage,
            "conversation_id": conversation,
        }


async def _get(server: ServerProcess, path: str, headers: dict[str, str] | None = None) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.url + path, headers=headers or {}) as response,
    ):
        assert response.status == 200, await response.text()
        return await response.json()


async def _get_status(server: ServerProcess, path: str, headers: dict[str, str]) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.url + path, headers=headers) as response,
    ):
        return response.status


async def _sluice(args: list[str], **env: str) -> tuple[int, str, str]:
    import sys

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sluice",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=base_env(**env),
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_follower_on_another_instance_keeps_the_answer_going(
    pair: tuple[ServerProcess, ServerProcess], upstream: ServerProcess
) -> None:
    one, two = pair
    alice = await _new_key(one)
    key = new_key()
    request = body(key, tokens_per_second=40, length=40)
    leave, following = asyncio.Event(), asyncio.Event()
    leader = asyncio.create_task(ask(one, request, alice, leave=leave))
    await _until(lambda: upstream_saw(upstream, key)["attempts"] == 1)
    follower = asyncio.create_task(ask(two, request, alice, started=following))
    await following.wait()
    leave.set()
    assert (await leader).finish is None
    answer = await follower
    assert answer.headers.get("x-sluice-coalesced") == "true"
    assert answer.finish == "stop" and len(answer.text) > 50
    seen = upstream_saw(upstream, key)
    assert (seen["attempts"], seen["completed"], seen["disconnected"]) == (1, 1, 0)
    # The follower elsewhere leaves last: then the upstream call is cancelled.
    key = new_key()
    request = body(key, tokens_per_second=20, length=200)
    leave, following = asyncio.Event(), asyncio.Event()
    leader = asyncio.create_task(ask(one, request, alice, leave=leave))
    await _until(lambda: upstream_saw(upstream, key)["attempts"] == 1)
    follower = asyncio.create_task(ask(two, request, alice, started=following, leave_after=6))
    await following.wait()
    leave.set()
    await leader
    await follower
    await _until(lambda: upstream_saw(upstream, key)["disconnected"] == 1)
    assert upstream_saw(upstream, key)["completed"] == 0


async def test_the_first_clients_stop_does_not_cut_the_followers(
    cached: ServerProcess, upstream: ServerProcess
) -> None:
    key = new_key()
    request = body(key, tokens_per_second=40, length=40)
    following = asyncio.Event()
    first = asyncio.create_task(ask(cached, request, leave_after=10**6))
    await _until(lambda: upstream_saw(upstream, key)["attempts"] == 1)
    follower = asyncio.create_task(ask(cached, request, started=following))
    await following.wait()
    await asyncio.sleep(0.1)
    # The first client stops its own answer (POST /v1/streams/{id}/cancel) ...
    stopped_id = await _first_stream_id(first)
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{cached.url}/v1/streams/{stopped_id}/cancel") as response,
    ):
        assert response.status == 200
    assert (await first).finish == "incomplete"
    # ... and only its own: the follower gets the whole answer.
    answer = await follower
    assert answer.finish == "stop" and len(answer.text) > 50
    seen = upstream_saw(upstream, key)
    assert (seen["attempts"], seen["completed"], seen["disconnected"]) == (1, 1, 0)


async def _first_stream_id(task: asyncio.Task[Answer]) -> str:
    """The stream id of a request still running (its first chunk's id, ``chatcmpl-…``)."""
    for _ in range(200):
        chunks = _STARTED.get(id(task))
        if chunks:
            return str(chunks[0]["id"]).removeprefix("chatcmpl-")
        await asyncio.sleep(0.01)
    raise AssertionError("no chunk yet")


_STARTED: dict[int, list[dict[str, Any]]] = {}


async def test_odd_cache_headers(cached: ServerProcess, upstream: ServerProcess) -> None:
    key = new_key()
    # A digit that is not ASCII (latin-1 "²") is no number of seconds.
    raw = await _raw_post(cached, body(key), [(b"cache-control", b"max-age=\xb2")])
    assert raw[0] == 400 and b"cache-control" in raw[1]
    assert (await ask(cached, body(key))).cache == "miss"
    # Every Cache-Control line counts: a no-store on any of them wins.
    raw = await _raw_post(
        cached, body(key), [(b"cache-control", b"max-age=10"), (b"cache-control", b"no-store")]
    )
    assert raw[0] == 200 and raw[2].get("x-sluice-cache") == "bypass"
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            cached.url + "/chat",
            json={"model": "relay", "message": "hi", "options": {"temperature": 0}},
            headers={"X-Sluice-Cache-Replay": "slowly"},
        ) as response,
    ):
        assert response.status == 400


async def _raw_post(
    server: ServerProcess, request: dict[str, Any], headers: list[tuple[bytes, bytes]]
) -> tuple[int, bytes, dict[str, str]]:
    """A request with header bytes as given (aiohttp would encode them itself)."""
    payload = orjson.dumps(request)
    head = [
        b"POST /v1/chat/completions HTTP/1.1",
        b"Host: 127.0.0.1",
        b"Content-Type: application/json",
        b"Content-Length: " + str(len(payload)).encode(),
        b"Connection: close",
        *(name + b": " + value for name, value in headers),
    ]
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"\r\n".join(head) + b"\r\n\r\n" + payload)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head_bytes, _, rest = data.partition(b"\r\n\r\n")
    status = int(head_bytes.split(b" ", 2)[1])
    found = {}
    for line in head_bytes.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        found[name.strip().lower().decode()] = value.strip().decode("latin-1")
    return status, rest, found


async def test_global_scope_a_budget_cut_reaches_only_its_own_key(
    tmp_path: Path, upstream: ServerProcess
) -> None:
    config = _config(tmp_path, upstream, 'cache = "memory"\ncache_scope = "global"')
    env = base_env(SLUICE_MASTER_KEY=MASTER, SLUICE_DATA_DIR=str(tmp_path / "data"))
    with running(["serve", "--config", str(config)], tmp_path, name="g", env=env) as server:
        poor = await _new_key(server, budget_tokens=60, period="day")
        rich = await _new_key(server)
        key = new_key()
        request = body(key, tokens_per_second=60, length=120)
        following = asyncio.Event()
        first = asyncio.create_task(ask(server, request, poor))
        await _until(lambda: upstream_saw(upstream, key)["attempts"] == 1)
        second = await ask(server, request, rich, started=following)
        cut = await first
    assert b"budget ran out" in cut.raw
    assert second.headers.get("x-sluice-coalesced") == "true"
    # (Not the word "budget": the sim's text may contain it.)
    assert second.finish == "stop" and b"insufficient_quota" not in second.raw
    assert b"ran out during the answer" not in second.raw


async def test_a_refused_request_calls_no_model(
    pair: tuple[ServerProcess, ServerProcess], upstream: ServerProcess
) -> None:
    """A shareable request refused by its limits (429) starts nothing upstream: its
    root runs only once an admitted request reads it."""
    one, _ = pair
    limited = await _new_key(one, rpm=1)
    assert (await ask(one, body(new_key()), limited)).status == 200
    refused_key = new_key()
    refused = await ask(one, body(refused_key), limited)
    assert refused.status == 429
    await asyncio.sleep(0.3)
    assert upstream_saw(upstream, refused_key)["attempts"] == 0
    # An admitted request for the same question asks the model, once.
    other = await _new_key(one)
    assert (await ask(one, body(refused_key), other)).cache == "miss"
    assert upstream_saw(upstream, refused_key)["attempts"] == 1
