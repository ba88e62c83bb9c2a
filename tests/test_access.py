"""Access control against the running server: keys, the master key, sessions with CSRF,
CORS, rate limits (also shared by two instances through Redis), budgets, and keys
kept out of logs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets

from tests.servers import ServerProcess, base_env, free_port, running

MASTER = "sk-master-" + "x" * 24


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture(scope="module")
def secured(
    tmp_path_factory: pytest.TempPathFactory, gateway_config: Path
) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("secured")
    env = base_env(
        SLUICE_MASTER_KEY=MASTER,
        SLUICE_CORS_ORIGINS='["https://app.example"]',
        SLUICE_DATA_DIR=str(tmp / "data"),
    )
    with running(["serve", "--config", str(gateway_config)], tmp, name="secured", env=env) as s:
        yield s


async def new_key(server: ServerProcess, **limits: Any) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            server.url + "/v1/admin/keys", json={"name": "t", **limits}, headers=auth(MASTER)
        ) as response,
    ):
        assert response.status == 200, await response.text()
        key: dict[str, Any] = await response.json()
        return key


async def completion(
    server: ServerProcess, secret: str | None, model: str = "relay", **body: Any
) -> tuple[int, dict[str, str], bytes]:
    payload = {"model": model, "messages": [{"role": "user", "content": "hi"}], **body}
    headers = auth(secret) if secret else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            server.url + "/v1/chat/completions", json=payload, headers=headers
        ) as response,
    ):
        return response.status, dict(response.headers), await response.read()


async def test_everything_but_liveness_needs_a_key(secured: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(secured.url + "/health/live") as response:
            assert response.status == 200
        for method, path in [
            ("GET", "/v1/models"),
            ("GET", "/health"),
            ("GET", "/health/ready"),
            ("GET", "/v1/conversations"),
            ("POST", "/chat"),
            ("GET", "/v1/streams/abc"),
            ("GET", "/v1/admin/keys"),
        ]:
            async with session.request(method, secured.url + path) as response:
                assert response.status == 401, path
                error = (await response.json())["error"]
                assert error["type"] == "authentication_error"
        async with session.get(secured.url + "/v1/models", headers=auth("sk-wrong")) as response:
            assert response.status == 401
            assert (await response.json())["error"]["code"] == "invalid_api_key"


async def test_keys_are_created_once_listed_and_revoked(secured: ServerProcess) -> None:
    key = await new_key(secured, models=["relay"], rpm=100)
    secret = key["key"]
    assert secret.startswith("sk-") and len(secret) > 40
    status, _, _ = await completion(secured, secret)
    assert status == 200
    status, _, body = await completion(secured, secret, model="relay-echo")
    assert status == 403, "the key is limited to relay"
    async with aiohttp.ClientSession() as session:
        async with session.get(secured.url + "/v1/admin/keys", headers=auth(MASTER)) as r:
            listed = await r.json()
        assert all("key" not in k and "hash" not in k for k in listed["data"])
        assert key["id"] in {k["id"] for k in listed["data"]}
        async with session.get(secured.url + "/v1/admin/keys", headers=auth(secret)) as r:
            assert r.status == 403, "only the master key manages keys"
        async with session.delete(
            f"{secured.url}/v1/admin/keys/{key['id']}", headers=auth(MASTER)
        ) as r:
            assert (await r.json())["revoked_at"] is not None
    await asyncio.sleep(2.2)  # lookups are cached for two seconds
    status, _, body = await completion(secured, secret)
    assert status == 401
    assert json.loads(body)["error"]["code"] == "revoked_api_key"


async def test_revoked_key_is_refused_mid_session(secured: ServerProcess) -> None:
    key = await new_key(secured)
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        async with session.post(secured.url + "/v1/session", json={"key": key["key"]}) as r:
            assert r.status == 200
            csrf = (await r.json())["csrf_token"]
            cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        async with session.get(secured.url + "/v1/models") as r:
            assert r.status == 200, "the session cookie authenticates"
        async with session.delete(
            f"{secured.url}/v1/admin/keys/{key['id']}", headers=auth(MASTER)
        ) as r:
            assert r.status == 200
        await asyncio.sleep(2.2)
        async with session.get(secured.url + "/v1/models") as r:
            assert r.status == 401
        assert csrf


async def test_session_csrf_and_sign_out(secured: ServerProcess) -> None:
    key = await new_key(secured)
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        async with session.post(secured.url + "/v1/session", json={"key": key["key"]}) as r:
            csrf = (await r.json())["csrf_token"]
        body = {"message": "hello", "model": "relay-echo"}
        async with session.post(secured.url + "/chat", json=body) as r:
            assert r.status == 403
            assert (await r.json())["error"]["code"] == "csrf_failed"
        async with session.post(
            secured.url + "/chat", json=body, headers={"X-CSRF-Token": "forged"}
        ) as r:
            assert r.status == 403
        async with session.post(
            secured.url + "/chat", json=body, headers={"X-CSRF-Token": csrf}
        ) as r:
            assert r.status == 200
            await r.read()
        async with session.get(secured.url + "/v1/session") as r:
            state = await r.json()
        # Who is signed in: the key's name and prefix, never its secret (no budget: none set).
        assert state == {
            "auth_required": True,
            "signed_in": True,
            "csrf_token": csrf,
            "key": {"name": key["name"], "prefix": key["prefix"]},
        }
        assert key["key"] not in json.dumps(state)
        async with session.delete(secured.url + "/v1/session") as r:
            assert r.status == 403, "signing out needs the CSRF token too"
        async with session.delete(secured.url + "/v1/session", headers={"X-CSRF-Token": csrf}) as r:
            assert r.status == 200
        async with session.get(secured.url + "/v1/models") as r:
            assert r.status == 401, "the session is revoked"
        async with session.post(secured.url + "/v1/session", json={"key": "sk-nope"}) as r:
            assert r.status == 401


async def test_cors_allow_list(secured: ServerProcess) -> None:
    preflight = {"Access-Control-Request-Method": "POST"}
    async with aiohttp.ClientSession() as session:
        async with session.options(
            secured.url + "/v1/chat/completions",
            headers={"Origin": "https://evil.example", **preflight},
        ) as r:
            assert r.status == 403
            assert "Access-Control-Allow-Origin" not in r.headers
        async with session.options(
            secured.url + "/v1/chat/completions",
            headers={"Origin": "https://app.example", **preflight},
        ) as r:
            assert r.status == 204
            assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
            assert r.headers["Access-Control-Allow-Credentials"] == "true"
        async with session.get(
            secured.url + "/v1/models", headers={"Origin": "https://evil.example", **auth(MASTER)}
        ) as r:
            assert "Access-Control-Allow-Origin" not in r.headers


async def test_websocket_needs_authentication(secured: ServerProcess) -> None:
    url = secured.url.replace("http", "ws") + "/ws"
    async with websockets.connect(url) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    async with websockets.connect(url, additional_headers=auth(MASTER)) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await ws.recv())["type"] == "pong"


async def test_rate_limits_name_the_limit(secured: ServerProcess) -> None:
    key = await new_key(secured, rpm=3)
    statuses = [(await completion(secured, key["key"]))[:2] for _ in range(4)]
    assert [s for s, _ in statuses] == [200, 200, 200, 429]
    headers = statuses[-1][1]
    assert int(headers["Retry-After"]) >= 1
    assert headers["x-ratelimit-limit-requests"] == "3"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert statuses[0][1]["x-ratelimit-remaining-requests"] == "2"
    status, _, body = await completion(secured, key["key"])
    assert "requests per minute" in json.loads(body)["error"]["message"]

    tokens = await new_key(secured, tpm=30)
    status, _, body = await completion(secured, tokens["key"], max_tokens=100)
    assert status == 429
    assert "tokens per minute" in json.loads(body)["error"]["message"]


async def test_concurrent_streams_are_limited(secured: ServerProcess) -> None:
    key = await new_key(secured, max_concurrent=1)
    slow = {"sim": {"tokens_per_second": 20}, "stream": True}
    async with aiohttp.ClientSession() as session:
        first = await session.post(
            secured.url + "/v1/chat/completions",
            json={"model": "relay", "messages": [{"role": "user", "content": "a"}], **slow},
            headers=auth(key["key"]),
        )
        assert first.status == 200
        status, _, body = await completion(secured, key["key"], **slow)
        assert status == 429
        assert json.loads(body)["error"]["code"] == "concurrency_limit_exceeded"
        await first.read()
    await asyncio.sleep(0.3)
    status, _, _ = await completion(secured, key["key"])
    assert status == 200, "the slot is free again"


async def test_budget_cuts_a_stream_in_band(secured: ServerProcess) -> None:
    key = await new_key(secured, budget_tokens=40, period="day")
    status, _, body = await completion(secured, key["key"], stream=True, sim={"length": 300})
    assert status == 200, body
    records = [line[6:] for line in body.decode().split("\n") if line.startswith("data: ")]
    assert "[DONE]" not in records
    error = json.loads(records[-1])["error"]
    assert error["code"] == "insufficient_quota"
    contents = [
        chunk
        for chunk in map(json.loads, records[:-1])
        if chunk.get("choices") and chunk["choices"][0]["delta"].get("content")
    ]
    assert 0 < len(contents) <= 40 - 8, "no more than the budget left after the prompt"
    await asyncio.sleep(0.5)  # spend is recorded when the answer ends
    status, _, body = await completion(secured, key["key"])
    assert status == 429
    assert json.loads(body)["error"]["type"] == "insufficient_quota"


async def test_secrets_never_reach_the_logs(secured: ServerProcess) -> None:
    key = await new_key(secured)
    await completion(secured, key["key"])
    await completion(secured, key["key"] + "x")  # a failed attempt
    await completion(secured, "sk-" + "y" * 40)
    log = secured.output()
    assert key["key"] not in log
    assert key["key"][8:] not in log
    assert MASTER not in log
    assert "y" * 40 not in log


def test_non_loopback_start_without_auth_is_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sluice", "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
        env=base_env(SLUICE_DATA_DIR=str(tmp_path)),
    )
    assert result.returncode == 2
    assert "no authentication" in result.stderr
    assert "--insecure-no-auth" in result.stderr


def test_keys_cli_creates_lists_and_revokes(tmp_path: Path) -> None:
    env = base_env(SLUICE_DATA_DIR=str(tmp_path))

    def keys(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sluice", "keys", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )

    created = keys(
        "create", "--name", "ci", "--rpm", "5", "--budget-tokens", "100", "--period", "day"
    )
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("sk-") and len(secret) > 40
    listed = keys("list")
    assert "ci" in listed.stdout and "rpm=5" in listed.stdout and "budget=100/day" in listed.stdout
    assert secret not in listed.stdout
    key_id = listed.stdout.split()[0]
    assert keys("revoke", key_id).returncode == 0
    assert "revoked" in keys("list").stdout
    bad = keys("create", "--name", "x", "--budget-tokens", "5")
    assert bad.returncode == 2 and "--period" in bad.stderr
    # With a key in the store, a non-loopback start is no longer refused for lack of auth.
    assert keys("create", "--name", "live").returncode == 0


async def test_two_instances_share_one_rate_limit_through_redis(
    tmp_path: Path, gateway_config: Path
) -> None:
    env = base_env(
        SLUICE_MASTER_KEY=MASTER,
        SLUICE_REDIS_URL="redis://127.0.0.1:6379/0",
        SLUICE_DATA_DIR=str(tmp_path / "shared-data"),  # one store: both know the key
    )
    args = ["serve", "--config", str(gateway_config)]
    with (
        running(args, tmp_path, name="limit-a", env=env) as first,
        running(args, tmp_path, name="limit-b", env=env) as second,
    ):
        key = await new_key(first, rpm=4)
        statuses = []
        for server in (first, second, first, second, second, first):
            status, _, _ = await completion(server, key["key"])
            statuses.append(status)
        assert statuses == [200, 200, 200, 200, 429, 429], "four a minute, across both"
