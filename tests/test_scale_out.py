"""Three gateways, one Redis, one PostgreSQL: instances behave as one gateway.

Each gateway runs the command and environment of `gateway-1` in compose.yaml (and the
Dockerfile's ENV and HEALTHCHECK), with only what ties the recipe to its containers
swapped for this machine's: the port, the data directory, the Redis and PostgreSQL
addresses (a key prefix and a fresh database per test), the master key and the path the
config file is mounted from. So the container recipe is exercised where no container
runtime exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis
import yaml  # type: ignore[import-untyped]

from sluice.wire.sse import SSEDecoder
from tests.databases import postgres_database
from tests.servers import base_env, free_port

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = "redis://127.0.0.1:6379/0"
MASTER = "sk-master-" + secrets.token_hex(12)
AUTH = {"Authorization": f"Bearer {MASTER}"}
#: The `sluice` script of the environment running the tests (the image's is on PATH).
SLUICE = str(Path(sys.executable).with_name("sluice"))


# -- the recipe -------------------------------------------------------------------------


def compose_gateway() -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    gateway: dict[str, Any] = compose["services"]["gateway-1"]
    return gateway


@dataclass
class Dockerfile:
    """The final stage's instructions that decide what runs."""

    cmd: list[str]
    healthcheck: list[str]
    env: dict[str, str]
    user: str
    base: str


def dockerfile() -> Dockerfile:
    text = (ROOT / "Dockerfile").read_text()
    lines = re.sub(r"\\\n\s*", " ", text).splitlines()
    stages = [n for n, line in enumerate(lines) if line.startswith("FROM ")]
    final = lines[stages[-1] :]
    env: dict[str, str] = {}
    cmd: list[str] = []
    healthcheck: list[str] = []
    user = "root"
    for line in final:
        word, _, rest = line.partition(" ")
        if word == "CMD":
            cmd = json.loads(rest)
        elif word == "HEALTHCHECK":
            healthcheck = json.loads(rest[rest.index("CMD [") + 4 :])
        elif word == "ENV":
            env.update(part.split("=", 1) for part in shlex.split(rest))  # type: ignore[misc]
        elif word == "USER":
            user = rest.strip()
    return Dockerfile(cmd, healthcheck, env, user, final[0].split()[1])


def interpolate(value: str) -> str:
    """Compose's ``${NAME:-default}``, with the defaults (nothing here sets them)."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


#: What ties the recipe to its containers, and what stands in for it here.
LOCAL = ("SLUICE_MASTER_KEY", "SLUICE_DATABASE_URL", "SLUICE_REDIS_URL", "SLUICE_REDIS_PREFIX")
LOCAL_IMAGE = ("SLUICE_DATA_DIR", "SLUICE_PORT")


def gateway_env(*, database: str, prefix: str, data_dir: Path) -> dict[str, str]:
    gateway = compose_gateway()
    image = dockerfile()
    compose_env: dict[str, str] = gateway["environment"]
    assert set(LOCAL) <= set(compose_env) and set(LOCAL_IMAGE) <= set(image.env)
    # The config file: where compose mounts it from.
    mounts = dict(
        reversed(volume.split(":")[:2]) for volume in gateway["volumes"] if volume.startswith("./")
    )
    config = ROOT / mounts[compose_env["SLUICE_CONFIG"]]
    local = {
        "SLUICE_MASTER_KEY": MASTER,
        "SLUICE_DATABASE_URL": database,
        "SLUICE_REDIS_URL": REDIS_URL,
        "SLUICE_REDIS_PREFIX": prefix,
        "SLUICE_CONFIG": str(config),
        "SLUICE_DATA_DIR": str(data_dir),
    }
    env = base_env()
    for key, value in {**image.env, **compose_env}.items():
        env[key] = local.get(key, interpolate(str(value)))
    return env


def test_the_recipe_is_complete() -> None:
    """What docs/DEPLOY.md promises of the recipe, checked where it is written."""
    image = dockerfile()
    gateway = compose_gateway()
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert image.base == "python:3.11-slim"
    assert image.user not in ("root", "0")
    assert gateway["command"] == image.cmd == ["sluice", "serve", "--host", "0.0.0.0"]
    assert "/health/ready" in " ".join(image.healthcheck)
    assert "${SLUICE_MASTER_KEY:?" in gateway["environment"]["SLUICE_MASTER_KEY"]
    # Two replicas of the same gateway, the shared state, and a proxy in front.
    replicas = [name for name, service in services.items() if service == gateway]
    assert replicas == ["gateway-1", "gateway-2"]
    assert {"redis", "postgres", "proxy"} <= set(services)
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "proxy_buffering off;" in nginx
    assert all(f"server {name}:8000" in nginx for name in replicas)
    assert "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in services["proxy"]["volumes"]
    # The runtime must not kill a replica that is still draining.
    drain = float(gateway["environment"]["SLUICE_DRAIN_SECONDS"])
    assert drain + 5 <= float(gateway["stop_grace_period"].removesuffix("s"))


# -- the gateways -----------------------------------------------------------------------


class Gateway:
    """One `sluice serve`, in a process group of its own (SIGKILL takes its workers)."""

    def __init__(self, name: str, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**env, "SLUICE_PORT": str(self.port)}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        #: What a load balancer following the health checks knows: False from the
        #: moment the instance is told to stop until it is ready again.
        self.routable = True

    def start(self, timeout: float = 90) -> None:
        command = compose_gateway()["command"]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [SLUICE, *command[1:]],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.output()}")
            if self.ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready in {timeout} s:\n{self.output()}")

    def ready(self) -> bool:
        request = urllib.request.Request(self.url + "/health/ready", headers=AUTH)
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.HTTPError):
            return False

    def healthcheck(self) -> int:
        """The Dockerfile's HEALTHCHECK command, run as the container would."""
        argv = dockerfile().healthcheck
        argv = [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]
        return subprocess.run(argv, env=self.env, capture_output=True, timeout=10).returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def terminate(self, timeout: float = 60) -> int:
        """What `docker stop` does: SIGTERM to the main process, then wait."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            self.terminate(30)
        except subprocess.TimeoutExpired:
            self.kill()


@contextmanager
def topology(tmp: Path) -> Iterator[list[Gateway]]:
    """Three gateways on a fresh PostgreSQL database and a Redis prefix of their own."""
    prefix = "test-scale-" + secrets.token_hex(4)
    loop = asyncio.new_event_loop()
    database = postgres_database()
    url = loop.run_until_complete(database.__aenter__())
    try:
        env = gateway_env(database=url, prefix=prefix, data_dir=tmp / "data")
        started = [Gateway(f"gw{n}", env, tmp / f"gw{n}.log") for n in range(3)]
        threads = [threading.Thread(target=g.start) for g in started]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            assert all(g.process is not None and g.ready() for g in started), [
                g.output()[-2000:] for g in started
            ]
            yield started
        finally:
            for gateway in started:
                gateway.stop()
    finally:
        loop.run_until_complete(database.__aexit__(None, None, None))
        loop.run_until_complete(_forget(prefix))
        loop.close()


async def _forget(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    async for key in client.scan_iter(match=f"{prefix}:*"):
        await client.delete(key)
    await client.aclose()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Gateway]]:
    """For the tests that leave every instance running (each uses its own data)."""
    with topology(tmp_path_factory.mktemp("scale")) as started:
        yield started


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[list[Gateway]]:
    """For the tests that kill or restart instances."""
    with topology(tmp_path) as started:
        yield started


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        headers=AUTH,
        connector=aiohttp.TCPConnector(limit=0),
        timeout=aiohttp.ClientTimeout(total=120, sock_read=30),
    )


def words(n: int, tag: str) -> str:
    """A prompt the echoing sim repeats: numbered words show a lost or moved chunk."""
    return tag + ": " + " ".join(f"w{i}" for i in range(n))


def completion(prompt: str, tokens_per_second: float) -> dict[str, Any]:
    return {
        "model": "sim",
        "stream": True,
        "messages": [{"role": "user", "content": prompt}],
        "sim": {"style": "echo", "tokens_per_second": tokens_per_second, "ttft_ms": 20},
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


def finish_reasons(records: list[str]) -> list[str]:
    reasons = []
    for data in records:
        if data != "[DONE]":
            for choice in json.loads(data).get("choices") or ():
                if choice.get("finish_reason"):
                    reasons.append(choice["finish_reason"])
    return reasons


async def read_records(
    response: aiohttp.ClientResponse, into: list[str], stop_after: int | None = None
) -> bool:
    """Appends the response's data records; True if it ended (the server closed it
    normally), False if it was cut (or ``stop_after`` records were read)."""
    decoder = SSEDecoder()
    try:
        async for piece in response.content.iter_any():
            for event in decoder.feed(piece):
                into.append(event.data)
                if stop_after is not None and len(into) >= stop_after:
                    response.close()
                    return False
    except (TimeoutError, aiohttp.ClientError):
        return False
    finally:
        response.release()
    return True


async def replay(http: aiohttp.ClientSession, url: str, stream_id: str) -> list[str]:
    records: list[str] = []
    async with http.get(f"{url}/v1/streams/{stream_id}") as response:
        assert response.status == 200, await response.text()
        assert await read_records(response, records)
    return records


# -- one gateway, whichever instance answers ------------------------------------------


async def chat_turn(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> list[Any]:
    async with http.post(url + "/chat", json=body) as response:
        assert response.status == 200, await response.text()
        records: list[str] = []
        assert await read_records(response, records)
    return [json.loads(r) for r in records]


@pytest.mark.slow
async def test_a_conversation_continues_on_another_instance(shared: list[Gateway]) -> None:
    a, b, c = shared
    echo = {"sim": {"style": "echo", "tokens_per_second": 0}}
    async with session() as http:
        first = await chat_turn(http, a.url, {"message": "first question", "options": echo})
        conversation = first[0]["conversation_id"]
        assert first[-1]["type"] == "done" and first[-1]["content"] == "first question"
        second = await chat_turn(
            http,
            b.url,
            {"conversation_id": conversation, "message": "second question", "options": echo},
        )
        assert second[0]["conversation_id"] == conversation
        assert second[-1]["content"] == "second question"
        async with http.get(f"{c.url}/v1/conversations/{conversation}") as response:
            assert response.status == 200
            messages = (await response.json())["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "first question"),
        ("assistant", "first question"),
        ("user", "second question"),
        ("assistant", "second question"),
    ]


@pytest.mark.slow
async def test_a_stream_is_resumed_and_stopped_from_other_instances(
    shared: list[Gateway],
) -> None:
    a, b, c = shared
    prompt = words(60, "s")
    async with session() as http:
        started = await http.post(
            a.url + "/v1/chat/completions",
            json=completion(prompt, 15),
            headers={"X-Sluice-On-Disconnect": "detach"},
        )
        assert started.status == 200
        stream_id = started.headers["x-sluice-stream-id"]
        seen: list[str] = []
        await read_records(started, seen, stop_after=5)
        resumed = await http.get(f"{b.url}/v1/streams/{stream_id}", params={"after": "5"})
        assert resumed.status == 200
        rest: list[str] = []
        reading = asyncio.create_task(read_records(resumed, rest))
        while len(rest) < 5:  # noqa: ASYNC110 (polling what the reader appends)
            await asyncio.sleep(0.05)
        async with http.post(f"{c.url}/v1/streams/{stream_id}/cancel") as stopped:
            assert stopped.status == 200
            assert (await stopped.json())["status"] == "cancelled"
        assert await asyncio.wait_for(reading, 10), "the resumed stream ends, not cut"
        # Byte-exact: what the two instances relayed is the log, and a prefix of the answer.
        assert seen + rest == await replay(http, c.url, stream_id)
        text = text_of(seen + rest)
        assert len(seen + rest) >= 10 and prompt.startswith(text) and text != prompt
        assert finish_reasons(rest) == ["incomplete"]


@pytest.mark.slow
async def test_limits_and_the_cache_are_global(shared: list[Gateway]) -> None:
    gateways = shared
    async with session() as http:
        async with http.post(
            gateways[0].url + "/v1/admin/keys", json={"name": "limited", "rpm": 4}
        ) as created:
            assert created.status == 200, await created.text()
            key = (await created.json())["key"]
        statuses = []
        body = {
            "model": "sim",
            "messages": [{"role": "user", "content": "hi"}],
            "sim": {"style": "echo", "tokens_per_second": 0},
        }
        for n in range(9):
            async with http.post(
                gateways[n % 3].url + "/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {key}"},
            ) as response:
                statuses.append(response.status)
        assert sorted(statuses) == [200] * 4 + [429] * 5, statuses
        # A deterministic answer stored by one instance is a hit on the others.
        cached = {**body, "temperature": 0, "messages": [{"role": "user", "content": "once"}]}
        outcomes, answers = [], []
        for gateway in gateways:
            async with http.post(gateway.url + "/v1/chat/completions", json=cached) as response:
                assert response.status == 200
                outcomes.append(response.headers["x-sluice-cache"])
                answers.append((await response.json())["choices"][0]["message"]["content"])
    assert outcomes == ["miss", "hit", "hit"]
    assert len(set(answers)) == 1


# -- losing an instance -----------------------------------------------------------------


@dataclass
class Client:
    """One client's stream, read from the instance it started on; when cut, resumed on
    another with the records it has."""

    n: int
    prompt: str
    stream_id: str = ""
    records: list[str] = field(default_factory=list)
    resumes: int = 0
    retries: int = 0
    #: Records the client had when its first reading was cut.
    cut_at: int | None = None
    #: When the stream started (its id arrived), and how long after that another
    #: instance last did not know it yet.
    started: float = 0.0
    unseen: float = 0.0
    #: Instances the stream was read from, in order.
    path: list[int] = field(default_factory=list)


async def run_client(
    http: aiohttp.ClientSession,
    gateways: list[Gateway],
    client: Client,
    *,
    tokens_per_second: float,
    first: int,
    ready: asyncio.Event | None = None,
    hop: bool = False,
) -> Client:
    """``hop``: leave after the first records and follow the stream on the next
    instance (as a client behind a proxy that lost its connection would)."""
    at = first
    deadline = time.monotonic() + 90
    while not client.stream_id:
        assert time.monotonic() < deadline, f"client {client.n} never got a stream"
        gateway = gateways[at % 3]
        try:
            response = await http.post(
                gateway.url + "/v1/chat/completions",
                json=completion(client.prompt, tokens_per_second),
                headers={"X-Sluice-On-Disconnect": "detach"},
            )
        except aiohttp.ClientError:
            response = None
        if response is None or response.status != 200:
            # Down, or draining (503 before any work started): the next instance.
            if response is not None:
                assert response.status == 503, await response.text()
                response.release()
            client.retries += 1
            at += 1
            await asyncio.sleep(0.1)
            continue
        client.stream_id = response.headers["x-sluice-stream-id"]
        client.started = time.monotonic()
        client.path.append(at % 3)
        if ready is not None:
            ready.set()
        ended = await read_records(response, client.records, stop_after=3 if hop else None)
    while not (ended and client.records and not _cut_in_band(client.records)):
        assert time.monotonic() < deadline, f"client {client.n} never finished"
        if client.records and _cut_in_band(client.records):
            client.records.pop()  # the instance said it is going; the stream is not over
        if client.cut_at is None:
            client.cut_at = len(client.records)
        # Resumes go where a load balancer would send them: not to a draining instance
        # (it would still take them, and keep draining for them).
        at += 1
        while not gateways[at % 3].routable and any(g.routable for g in gateways):
            at += 1
        gateway = gateways[at % 3]
        client.resumes += 1
        try:
            response = await http.get(
                f"{gateway.url}/v1/streams/{client.stream_id}",
                params={"after": str(len(client.records))},
            )
        except aiohttp.ClientError:
            ended = False
            await asyncio.sleep(0.1)
            continue
        if response.status == 404 and time.monotonic() - client.started < UNSEEN_FOR:
            # Not in Redis yet: the owner mirrors a new stream a moment after it starts.
            client.unseen = time.monotonic() - client.started
            response.release()
            ended = False
            await asyncio.sleep(0.05)
            continue
        if response.status != 200:
            assert response.status == 503, await response.text()
            response.release()
            ended = False
            await asyncio.sleep(0.1)
            continue
        client.path.append(at % 3)
        ended = await read_records(response, client.records)
    return client


#: A stream unknown to other instances this long after it started is lost.
UNSEEN_FOR = 3.0


def _cut_in_band(records: list[str]) -> bool:
    last = records[-1]
    return last != "[DONE]" and '"shutting_down"' in last


async def chat_after_kill(
    http: aiohttp.ClientSession, gateways: list[Gateway], start: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The killed instance's chat answer as stored once the survivors noticed, and the
    last frame its resumer gets."""
    deadline = time.monotonic() + 45
    answer: dict[str, Any] = {"status": "streaming"}
    while answer["status"] == "streaming" and time.monotonic() < deadline:
        await asyncio.sleep(1)
        async with http.get(
            f"{gateways[2].url}/v1/conversations/{start['conversation_id']}"
        ) as got:
            assert got.status == 200
            answer = (await got.json())["messages"][-1]
    async with http.get(f"{gateways[1].url}/v1/streams/{start['stream_id']}") as resumed:
        assert resumed.status == 200
        records: list[str] = []
        assert await read_records(resumed, records)
    return answer, json.loads(records[-1])


@pytest.mark.slow
async def test_a_killed_instances_streams_end_incomplete_and_nothing_else_is_lost(
    gateways: list[Gateway],
) -> None:
    streams = 201
    clients = [Client(n, words(30, f"k{n}")) for n in range(streams)]
    async with session() as http:
        readies = [asyncio.Event() for _ in clients]
        tasks = [
            asyncio.create_task(
                run_client(http, gateways, c, tokens_per_second=15, first=c.n, ready=r)
            )
            for c, r in zip(clients, readies, strict=True)
        ]
        for ready in readies:
            await asyncio.wait_for(ready.wait(), 30)
        # And a chat turn, whose answer is saved as it streams.
        turn = await http.post(
            gateways[0].url + "/chat",
            json={
                "message": words(30, "chat"),
                "options": {"sim": {"style": "echo", "tokens_per_second": 10}},
            },
        )
        assert turn.status == 200
        frames: list[str] = []
        await read_records(turn, frames, stop_after=6)
        start = json.loads(frames[0])
        await asyncio.sleep(1.0)
        killed = time.monotonic()
        await asyncio.to_thread(gateways[0].kill)
        done, (saved, resumed_turn) = await asyncio.gather(
            asyncio.gather(*tasks), chat_after_kill(http, gateways, start)
        )
        noticed = time.monotonic() - killed
        # All at once: a dead owner's stream has no end in the log, so each replay
        # waits for the lease check like its resumer did.
        replays = await asyncio.gather(
            *(replay(http, gateways[1 + c.n % 2].url, c.stream_id) for c in done)
        )
        logged = {client.n: log for client, log in zip(done, replays, strict=True)}
    victims = [c for c in done if c.path[0] == 0]
    survivors = [c for c in done if c.path[0] != 0]
    assert len(victims) == streams // 3 and len(survivors) == streams - streams // 3
    ahead = 0
    for client in victims:
        assert client.resumes >= 1 and client.cut_at is not None
        assert client.records[-1] == "[DONE]"
        text = text_of(client.records)
        assert text and client.prompt.startswith(text) and text != client.prompt
        log = logged[client.n]
        assert finish_reasons(log) == ["incomplete"] and log[-1] == "[DONE]"
        assert client.prompt.startswith(text_of(log))
        # The log's records before its `incomplete` ending (and [DONE]).
        stored = len(log) - 2
        if client.cut_at <= stored:
            # Resumed within the log: byte-exact, ending `incomplete`.
            assert client.records == log
        else:
            # What the dead owner sent its own client in its last moments had not
            # reached Redis (the mirror writes in batches), so the client is ahead of
            # the log; the resume still tells it how the stream ended.
            ahead += 1
            assert finish_reasons(client.records[client.cut_at :]) == ["incomplete"]
            assert client.records[-1] == "[DONE]"
            assert client.records[:stored] == log[:stored]
    for client in survivors:
        assert finish_reasons(client.records) == ["stop"]
        assert text_of(client.records) == client.prompt, "nothing lost or reordered"
        assert client.records == logged[client.n], "byte-exact"
    # A stream's lease lapses in 10 s; resumers notice within two quiet checks after.
    assert noticed < 30
    # Another instance's sweep finds the dead instance's chat answer and saves it as
    # incomplete; its resumer is told so too, instead of waiting forever.
    assert saved["status"] == "incomplete"
    assert words(30, "chat").startswith(saved["content"])
    assert resumed_turn["type"] == "done" and resumed_turn["finish_reason"] == "incomplete"
    print(f"killed instance: {len(victims)} streams ended incomplete, {ahead} of them ahead")


@pytest.mark.slow
async def test_a_rolling_restart_loses_no_stream(gateways: list[Gateway]) -> None:
    streams = 150
    async with session() as http:
        finished: list[Client] = []
        restarting = True

        async def keep_streaming(n: int) -> None:
            # Back-to-back streams until the restart is over, each from a new client.
            round_ = 0
            while restarting:
                client = Client(n, words(12, f"r{n}x{round_}"))
                finished.append(
                    await run_client(
                        http,
                        gateways,
                        client,
                        tokens_per_second=20,
                        first=n + round_,
                        hop=n % 2 == 1,
                    )
                )
                round_ += 1

        began = time.monotonic()
        phases: list[float] = []
        load = [asyncio.create_task(keep_streaming(n)) for n in range(streams)]
        await asyncio.sleep(3)
        for gateway in gateways:
            # What an orchestrator does: stop one replica (it drains), start it again,
            # wait until its HEALTHCHECK passes, then the next.
            gateway.routable = False
            stopping = asyncio.create_task(asyncio.to_thread(gateway.terminate))
            await asyncio.sleep(0.5)
            assert await asyncio.to_thread(gateway.healthcheck) != 0, "unhealthy while draining"
            assert await stopping in (0, -signal.SIGTERM)
            phases.append(time.monotonic() - began)
            await asyncio.to_thread(gateway.start)
            phases.append(time.monotonic() - began)
            assert await asyncio.to_thread(gateway.healthcheck) == 0
            gateway.routable = True
            await asyncio.sleep(1)
        restarting = False
        await asyncio.gather(*load)
        restarted = time.monotonic() - began
        resumed = [c for c in finished if c.resumes]
        # Every resumed stream byte-exact: what the client pieced together from two or
        # more instances is the shared log, record for record.
        limit = asyncio.Semaphore(50)

        async def logged(client: Client) -> list[str]:
            async with limit:
                return await replay(http, gateways[client.n % 3].url, client.stream_id)

        logs = await asyncio.gather(*(logged(c) for c in resumed))
        for client, log in zip(resumed, logs, strict=True):
            assert client.records == log
    assert len(finished) >= 2 * streams
    assert len(resumed) >= len(finished) // 3, "half the clients follow on another instance"
    for client in finished:
        assert finish_reasons(client.records) == ["stop"], (client.n, client.records[-3:])
        assert client.records[-1] == "[DONE]"
        assert text_of(client.records) == client.prompt, "nothing lost or reordered"
    retried = sum(1 for c in finished if c.retries)
    unseen = sorted(c.unseen for c in finished if c.unseen)
    print(
        f"rolling restart: {len(finished)} streams, {streams} at a time; "
        f"{retried} started on another instance after a refusal, {len(resumed)} resumed; "
        f"{len(unseen)} not yet known elsewhere when resumed (longest "
        f"{unseen[-1] if unseen else 0:.2f} s after the start); restart took "
        f"{restarted:.1f} s (stopped, ready at: {[round(p, 1) for p in phases]})"
    )


# -- PostgreSQL restarted mid-stream (a private server: never the shared one) ------------

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on its own port, run as the postgres user."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sluice-pg-"))
        shutil.chown(self.root, "postgres", "postgres")
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._as_postgres(PG_BIN / "initdb", "-D", self.data, "-A", "trust", "-U", "postgres")

    def _as_postgres(self, *argv: object) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *map(str, argv)],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_postgres(
            PG_BIN / "pg_ctl", "-D", self.data, "-o", options, "-l", self.root / "log", "-w",
            "start",
        )  # fmt: skip

    def stop(self) -> None:
        self._as_postgres(PG_BIN / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.mark.slow
async def test_a_postgres_restart_mid_stream_saves_the_answer(tmp_path: Path) -> None:
    postgres = PrivatePostgres()
    prefix = "test-scale-" + secrets.token_hex(4)
    postgres.start()
    env = gateway_env(database=postgres.url, prefix=prefix, data_dir=tmp_path / "data")
    gateway = Gateway("gw", env, tmp_path / "gw.log")
    try:
        await asyncio.to_thread(gateway.start)
        prompt = words(40, "pg")
        async with session() as http:
            turn = await http.post(
                gateway.url + "/chat",
                json={
                    "message": prompt,
                    "options": {"sim": {"style": "echo", "tokens_per_second": 25}},
                },
            )
            assert turn.status == 200
            frames: list[str] = []
            reading = asyncio.create_task(read_records(turn, frames))
            while len(frames) < 5:  # noqa: ASYNC110 (polling what the reader appends)
                await asyncio.sleep(0.05)
            start = json.loads(frames[0])
            # The database goes away mid-answer and comes back after the answer ended.
            await asyncio.to_thread(postgres.stop)
            down = time.monotonic()
            # Nothing hangs meanwhile: a request that needs the database is answered.
            asked = time.monotonic()
            async with http.get(f"{gateway.url}/v1/conversations/{start['conversation_id']}") as r:
                # OpenAI's shape for "retry shortly", not a bare 500.
                assert r.status == 503
                assert r.headers["Retry-After"] == "1"
                assert (await r.json())["error"]["code"] == "service_unavailable"
            assert time.monotonic() - asked < 10
            async with http.get(gateway.url + "/health/ready") as ready:
                assert ready.status == 503
            # The client's stream does not depend on the database.
            assert await asyncio.wait_for(reading, 30)
            done = json.loads(frames[-1])
            assert done["type"] == "done" and done["content"] == prompt
            await asyncio.sleep(max(0.0, 3 - (time.monotonic() - down)))
            await asyncio.to_thread(postgres.start)
            # The saver's bounded retries land the final answer once it is back.
            deadline = time.monotonic() + 20
            answer: dict[str, Any] = {"status": "streaming"}
            while answer.get("status") != "complete" and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                async with http.get(
                    f"{gateway.url}/v1/conversations/{start['conversation_id']}"
                ) as got:
                    if got.status == 200:
                        answer = (await got.json())["messages"][-1]
            assert answer["status"] == "complete", answer
            assert answer["content"] == prompt
    finally:
        gateway.stop()
        postgres.remove()
        await _forget(prefix)
