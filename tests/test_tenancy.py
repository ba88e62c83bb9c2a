"""Tenancy against the running server: every key owns its conversations and streams,
another key gets 404 for all of them (HTTP and WebSocket), the admin sees everything
only when it asks, the gate never opens by itself, and revocation reaches open sockets.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis
import websockets
from websockets.asyncio.client import ClientConnection

from sluice.policy.sessions import PER_KEY, MemorySessions, RedisSessions, Sessions
from tests.servers import ServerProcess, base_env, running

MASTER = "sk-master-" + "t" * 24
SLOW = {"sim": {"ttft_ms": 0, "tokens_per_second": 40, "length": 400}}


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture(scope="module")
def tenants(
    tmp_path_factory: pytest.TempPathFactory, gateway_config: Path
) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("tenants")
    env = base_env(SLUICE_MASTER_KEY=MASTER, SLUICE_DATA_DIR=str(tmp / "data"))
    with running(["serve", "--config", str(gateway_config)], tmp, name="tenants", env=env) as s:
        yield s


async def create_key(server: ServerProcess, name: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            server.url + "/v1/admin/keys", json={"name": name}, headers=auth(MASTER)
        ) as response,
    ):
        assert response.status == 200, await response.text()
        key: dict[str, Any] = await response.json()
        return key


@pytest.fixture
async def two_keys(tenants: ServerProcess) -> tuple[str, str]:
    a = await create_key(tenants, "alice")
    b = await create_key(tenants, "bob")
    return a["key"], b["key"]


async def request(
    server: ServerProcess, method: str, path: str, secret: str, body: Any = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, server.url + path, json=body, headers=auth(secret)) as response,
    ):
        raw = await response.read()
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, raw


async def chat_turn(server: ServerProcess, secret: str, **body: Any) -> tuple[str, str]:
    """One finished /chat turn: (conversation id, stream id)."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            server.url + "/chat",
            json={"model": "sim", **body},
            headers=auth(secret),
        ) as response,
    ):
        assert response.status == 200, await response.text()
        text = await response.text()
    start = json.loads(text.split("data: ", 1)[1].split("\n", 1)[0])
    return start["conversation_id"], start["stream_id"]


async def live_stream(server: ServerProcess, secret: str) -> str:
    """A detached /v1/chat/completions stream still running: its id."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            server.url + "/v1/chat/completions",
            json={
                "model": "sim",
                "stream": True,
                "messages": [{"role": "user", "content": "a long one"}],
                **SLOW,
            },
            headers={**auth(secret), "X-Sluice-On-Disconnect": "detach"},
        ) as response,
    ):
        assert response.status == 200
        stream_id = response.headers["x-sluice-stream-id"]
        await response.content.readline()  # the first record: it is running
        return stream_id


def assert_not_found(status: int, body: Any, what: str) -> None:
    assert status == 404, (what, status, body)
    assert body["error"]["type"] == "invalid_request_error", body
    assert body["error"]["code"] == "not_found", body


async def test_another_key_gets_404_for_every_conversation_route(
    tenants: ServerProcess, two_keys: tuple[str, str]
) -> None:
    alice, bob = two_keys
    conversation_id, _ = await chat_turn(tenants, alice, message="Alice's secret plan")
    status, body = await request(tenants, "GET", f"/v1/conversations/{conversation_id}", alice)
    assert status == 200 and body["owner"].startswith("key:")
    missing = "0" * 24
    for method, path, payload in [
        ("GET", f"/v1/conversations/{conversation_id}", None),
        ("GET", f"/v1/conversations/{conversation_id}/messages", None),
        ("PATCH", f"/v1/conversations/{conversation_id}", {"title": "mine now"}),
        ("DELETE", f"/v1/conversations/{conversation_id}", None),
    ]:
        status, body = await request(tenants, method, path, bob, payload)
        assert_not_found(status, body, f"{method} {path}")
        # Exactly what a conversation that never existed gives: no hint.
        other = path.replace(conversation_id, missing)
        _, never = await request(tenants, method, other, bob, payload)
        assert (
            body["error"]["message"].replace(conversation_id, missing)
            == (never["error"]["message"])
        )
    # Bob cannot continue, regenerate or edit in it either.
    for turn in (
        {"conversation_id": conversation_id, "message": "hijack"},
        {"conversation_id": conversation_id, "regenerate": True},
    ):
        status, body = await request(tenants, "POST", "/chat", bob, {"model": "sim", **turn})
        assert_not_found(status, body, json.dumps(turn))
        assert body["error"]["param"] == "conversation_id"
    # Nor find it by listing or searching.
    status, body = await request(tenants, "GET", "/v1/conversations?q=secret", bob)
    assert status == 200 and body["data"] == []
    status, body = await request(tenants, "GET", "/v1/conversations?all=true", bob)
    assert status == 403
    # Alice's conversation is untouched and still hers.
    status, body = await request(tenants, "GET", f"/v1/conversations/{conversation_id}", alice)
    assert status == 200 and body["title"] != "mine now"
    assert [m["role"] for m in body["messages"]] == ["user", "assistant"]
    status, body = await request(tenants, "GET", "/v1/conversations?q=secret", alice)
    assert [c["id"] for c in body["data"]] == [conversation_id]


async def test_admin_sees_everything_only_when_asking(
    tenants: ServerProcess, two_keys: tuple[str, str]
) -> None:
    alice, _ = two_keys
    conversation_id, _ = await chat_turn(tenants, alice, message="for the admin to find")
    status, body = await request(tenants, "GET", "/v1/conversations?q=admin+to+find", MASTER)
    assert status == 200 and body["data"] == []  # the admin's own view by default
    status, body = await request(
        tenants, "GET", "/v1/conversations?all=true&q=admin+to+find", MASTER
    )
    assert [c["id"] for c in body["data"]] == [conversation_id]
    owner = body["data"][0]["owner"]
    status, body = await request(tenants, "GET", f"/v1/conversations?owner={owner}", MASTER)
    assert conversation_id in [c["id"] for c in body["data"]]
    status, body = await request(tenants, "GET", f"/v1/conversations/{conversation_id}", MASTER)
    assert status == 200


async def test_another_key_gets_404_for_streams_over_http(
    tenants: ServerProcess, two_keys: tuple[str, str]
) -> None:
    alice, bob = two_keys
    stream_id = await live_stream(tenants, alice)
    for method, path in [
        ("GET", f"/v1/streams/{stream_id}"),
        ("POST", f"/v1/streams/{stream_id}/cancel"),
    ]:
        status, body = await request(tenants, method, path, bob)
        assert_not_found(status, body, f"{method} {path}")
    # Bob's cancel did nothing: Alice's stream is still running, and she can stop it.
    status, body = await request(tenants, "POST", f"/v1/streams/{stream_id}/cancel", alice)
    assert status == 200 and body["cancelled"] is True, body
    # A chat stream too.
    _, chat_stream = await chat_turn(tenants, alice, message="hello")
    status, body = await request(tenants, "GET", f"/v1/streams/{chat_stream}", bob)
    assert_not_found(status, body, "chat stream resume")
    status, _ = await request(tenants, "GET", f"/v1/streams/{chat_stream}", MASTER)
    assert status == 200  # the admin reaches it


async def socket(server: ServerProcess, secret: str) -> ClientConnection:
    return await websockets.connect(
        f"ws://127.0.0.1:{server.port}/ws", additional_headers=auth(secret)
    )


async def frame(ws: ClientConnection) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return data


async def test_another_key_gets_404_for_streams_over_websocket(
    tenants: ServerProcess, two_keys: tuple[str, str]
) -> None:
    alice, bob = two_keys
    stream_id = await live_stream(tenants, alice)
    ws = await socket(tenants, bob)
    try:
        for kind in ("resume", "stop"):
            await ws.send(json.dumps({"type": kind, "stream_id": stream_id, "after": 0}))
            reply = await frame(ws)
            assert reply["type"] == "error" and reply["code"] == "not_found", reply
        # Nor can Bob's socket write into Alice's conversation.
        conversation_id, _ = await chat_turn(tenants, alice, message="ws hijack target")
        await ws.send(
            json.dumps({"type": "chat", "conversation_id": conversation_id, "message": "x"})
        )
        reply = await frame(ws)
        assert reply["type"] == "error" and reply["code"] == "not_found", reply
    finally:
        await ws.close()
    # Alice's stream was not stopped by Bob.
    status, body = await request(tenants, "POST", f"/v1/streams/{stream_id}/cancel", alice)
    assert status == 200 and body["cancelled"] is True, body


async def test_revoked_key_closes_its_open_websocket(
    tenants: ServerProcess, two_keys: tuple[str, str]
) -> None:
    doomed = await create_key(tenants, "doomed")
    ws = await socket(tenants, doomed["key"])
    try:
        await ws.send(json.dumps({"type": "ping"}))
        assert (await frame(ws))["type"] == "pong"
        status, _ = await request(tenants, "DELETE", f"/v1/admin/keys/{doomed['id']}", MASTER)
        assert status == 200
        # Closed by the server within the recheck interval, with a policy-violation code,
        # also without the client sending anything.
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(8):
                while True:
                    await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    finally:
        await ws.close()


async def test_revoking_the_last_key_leaves_the_gateway_closed(
    tmp_path: Path, gateway_config: Path
) -> None:
    env = base_env(SLUICE_DATA_DIR=str(tmp_path / "data"))

    async def keys(*args: str) -> tuple[str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sluice", "keys", *args, env=env, stdout=PIPE, stderr=PIPE
        )
        out, err = await process.communicate()
        assert process.returncode == 0, err
        return out.decode(), err.decode()

    created, _ = await keys("create", "--name", "only")
    secret = next(w for w in created.split() if w.startswith("sk-"))
    key_id = (await keys("list"))[0].split()[0]
    with running(
        ["serve", "--config", str(gateway_config)], tmp_path, name="closing", env=env
    ) as server:
        status, _ = await request(server, "GET", "/v1/models", secret)
        assert status == 200
        _, warning = await keys("revoke", key_id)
        assert "stays closed" in warning
        await asyncio.sleep(2.5)  # past the two-second lookup cache
        async with (
            aiohttp.ClientSession() as session,
            session.get(server.url + "/v1/models") as response,
        ):
            assert response.status == 401  # no key at all: still closed
        status, _ = await request(server, "GET", "/v1/models", secret)
        assert status == 401
        # Only an explicit decision opens it.
        await keys("auth", "off")
        await asyncio.sleep(2.5)
        async with (
            aiohttp.ClientSession() as session,
            session.get(server.url + "/v1/models") as response,
        ):
            assert response.status == 200


@pytest.mark.parametrize("value", ["", "short-key", " " * 20, " padded-master-key-1234 "])
def test_empty_short_or_padded_master_key_refuses_to_start(
    tmp_path: Path, gateway_config: Path, value: str
) -> None:
    env = base_env(SLUICE_MASTER_KEY=value, SLUICE_DATA_DIR=str(tmp_path / "data"))
    result = subprocess.run(
        [sys.executable, "-m", "sluice", "serve", "--config", str(gateway_config), "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert "SLUICE_MASTER_KEY" in result.stderr
    assert ("16 characters" if value.strip() == value else "white space") in result.stderr


async def test_rotated_master_key_kills_its_sessions(tmp_path: Path, gateway_config: Path) -> None:
    data = str(tmp_path / "data")
    old, new = "sk-old-master-" + "o" * 20, "sk-new-master-" + "n" * 20
    # Sessions in Redis outlive the process: the rotation must still kill them.
    common = {
        "SLUICE_DATA_DIR": data,
        "SLUICE_REDIS_URL": "redis://127.0.0.1:6379/0",
        "SLUICE_REDIS_PREFIX": "tenancy-" + tmp_path.name[-12:],
    }
    config = ["serve", "--config", str(gateway_config)]
    with running(config, tmp_path, name="m1", env=base_env(SLUICE_MASTER_KEY=old, **common)) as s:
        async with (
            aiohttp.ClientSession() as session,
            session.post(s.url + "/v1/session", json={"key": old}) as response,
        ):
            assert response.status == 200
            cookie = response.cookies["sluice_session"].value
        headers = {"Cookie": f"sluice_session={cookie}"}
        async with (
            aiohttp.ClientSession() as session,
            session.get(s.url + "/v1/admin/keys", headers=headers) as response,
        ):
            assert response.status == 200
    # The same key after a restart: the session lives on (shared in Redis).
    with running(config, tmp_path, name="m1b", env=base_env(SLUICE_MASTER_KEY=old, **common)) as s:
        async with (
            aiohttp.ClientSession() as session,
            session.get(s.url + "/v1/admin/keys", headers=headers) as response,
        ):
            assert response.status == 200
    with running(config, tmp_path, name="m2", env=base_env(SLUICE_MASTER_KEY=new, **common)) as s:
        async with (
            aiohttp.ClientSession() as session,
            session.get(s.url + "/v1/admin/keys", headers=headers) as response,
        ):
            assert response.status == 401
            assert (await response.json())["error"]["code"] == "session_expired"
    # Another deployment (another prefix) on the same Redis never knew the session.
    other = {**common, "SLUICE_REDIS_PREFIX": common["SLUICE_REDIS_PREFIX"] + "-other"}
    with running(config, tmp_path, name="m3", env=base_env(SLUICE_MASTER_KEY=old, **other)) as s:
        async with (
            aiohttp.ClientSession() as session,
            session.get(s.url + "/v1/admin/keys", headers=headers) as response,
        ):
            assert response.status == 401


@pytest.fixture(params=["memory", "redis"])
async def sessions(request: pytest.FixtureRequest) -> AsyncIterator[Sessions]:
    if request.param == "memory":
        yield MemorySessions(3600)
        return
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    prefix = "tenancy-sessions-" + secrets.token_hex(6)
    try:
        yield RedisSessions(client, 3600, prefix)
    finally:
        names = [name async for name in client.scan_iter(match=prefix + ":*")]
        if names:
            await client.delete(*names)
        await client.aclose()


async def test_one_key_signing_in_many_times_never_ends_anothers_session(
    sessions: Sessions,
) -> None:
    alice, _ = await sessions.create("alice", False)
    admin, _ = await sessions.create("", True, "fingerprint")
    mallory = [(await sessions.create("mallory", False))[0] for _ in range(PER_KEY + 10)]
    assert await sessions.get(alice) is not None
    assert await sessions.get(admin) is not None
    # Mallory's own oldest are the ones that ended, and no more than needed.
    alive = [token for token in mallory if await sessions.get(token) is not None]
    assert alive == mallory[-PER_KEY:]


async def test_sessions_end_least_recently_used_first(sessions: Sessions) -> None:
    tokens = [(await sessions.create("bob", False))[0] for _ in range(PER_KEY)]
    assert await sessions.get(tokens[0]) is not None  # used: now the most recent
    await asyncio.sleep(0.01)
    await sessions.create("bob", False)
    assert await sessions.get(tokens[0]) is not None
    assert await sessions.get(tokens[1]) is None


async def test_revoking_a_key_ends_its_running_streams_in_band(tenants: ServerProcess) -> None:
    """A revoked key's answers stop here and now: a stream it had open ends with an
    in-band `revoked_api_key` error instead of streaming on to its end, and another
    key's stream runs on."""
    carol = await create_key(tenants, "carol")
    dave = await create_key(tenants, "dave")
    body = {
        "model": "sim",
        "stream": True,
        "messages": [{"role": "user", "content": "a long one"}],
        **SLOW,
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            tenants.url + "/v1/chat/completions", json=body, headers=auth(carol["key"])
        ) as revoked,
        session.post(
            tenants.url + "/v1/chat/completions", json=body, headers=auth(dave["key"])
        ) as other,
    ):
        assert revoked.status == 200 and other.status == 200
        await revoked.content.readline()
        await other.content.readline()
        async with session.delete(
            tenants.url + f"/v1/admin/keys/{carol['id']}", headers=auth(MASTER)
        ) as response:
            assert response.status == 200
        started = asyncio.get_running_loop().time()
        records = [line async for line in revoked.content if line.startswith(b"data: ")]
        took = asyncio.get_running_loop().time() - started
        # 400 tokens at 40 a second would take 10 s: it ended at once instead.
        assert took < 3.0, took
        error = json.loads(records[-1][6:])["error"]
        assert error["code"] == "revoked_api_key", error
        assert b"data: [DONE]" not in records
        # The other key's stream is still running.
        line = await asyncio.wait_for(other.content.readline(), 2.0)
        assert line
