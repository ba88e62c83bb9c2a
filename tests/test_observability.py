"""One log line per request, the request log (`sluice logs`, the admin API), and alerts
(/health, the log, a webhook) against running gateways."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.conftest import GATEWAY_CONFIG
from tests.faults import new_key
from tests.servers import ServerProcess, base_env, free_port, running

MASTER = "sk-master-" + "o" * 24
#: Set when the webhook receiver has had both state changes.
_WEBHOOK_DONE: list[asyncio.Event] = []


@pytest.fixture(scope="module")
def logged(
    tmp_path_factory: pytest.TempPathFactory, upstream: ServerProcess
) -> Iterator[tuple[ServerProcess, Path]]:
    tmp = tmp_path_factory.mktemp("logged")
    config = tmp / "logged.toml"
    body = GATEWAY_CONFIG.format(upstream=upstream.url, dead_port=free_port(), blackhole_port=1)
    config.write_text(body)
    env = base_env(SLUICE_DATA_DIR=str(tmp / "data"), SLUICE_MASTER_KEY=MASTER)
    with running(["serve", "--config", str(config)], tmp, name="logged", env=env) as server:
        yield server, tmp / "data"


async def _ask(server: ServerProcess, secret: str, **body: Any) -> tuple[int, str]:
    request = {
        "model": "relay",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "hello"}],
        **body,
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            server.url + "/v1/chat/completions",
            json=request,
            headers={"Authorization": f"Bearer {secret}"},
        ) as response,
    ):
        await response.read()
        return response.status, response.headers["x-request-id"]


async def _key(server: ServerProcess, name: str) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            server.url + "/v1/admin/keys",
            json={"name": name},
            headers={"Authorization": f"Bearer {MASTER}"},
        ) as response,
    ):
        secret: str = (await response.json())["key"]
        return secret


def _request_lines(server: ServerProcess) -> list[dict[str, Any]]:
    lines = []
    for line in server.output().splitlines():
        if line.startswith("{") and '"sluice.requests"' in line:
            lines.append(json.loads(line))
    return lines


def _sluice(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice", *args],
        capture_output=True,
        text=True,
        env=base_env(**env),
        timeout=60,
    )


async def test_one_json_line_per_request_without_text_or_secrets(
    logged: tuple[ServerProcess, Path],
) -> None:
    server, _ = logged
    secret = await _key(server, "logline-app")
    marker = "zebra-" + new_key()
    status, request_id = await _ask(
        server, secret, messages=[{"role": "user", "content": f"say {marker}"}]
    )
    assert status == 200
    for _ in range(100):
        found = [line for line in _request_lines(server) if line.get("request_id") == request_id]
        if found:
            break
        await asyncio.sleep(0.05)
    (line,) = found
    assert line["level"] == "info" and line["route"] == "chat.completions"
    assert (line["status"], line["model"], line["key_name"]) == (200, "relay", "logline-app")
    assert line["completion_tokens"] > 0 and line["prompt_tokens"] > 0
    assert line["ttft_ms"] > 0 and line["duration_ms"] >= line["ttft_ms"]
    assert line["finish_reason"] == "stop" and line["retries"] == 0
    assert line["message"].startswith("POST chat.completions 200")
    output = server.output()
    assert marker not in output  # no chat text unless log_content
    assert secret not in output and MASTER not in output


async def test_the_request_log_finds_a_request(logged: tuple[ServerProcess, Path]) -> None:
    server, data = logged
    secret = await _key(server, "log-reader")
    status, request_id = await _ask(server, secret, model="nope")
    assert status == 404
    status, found_id = await _ask(server, secret)
    assert status == 200
    await asyncio.sleep(1.5)  # rows are written in batches, once a second
    # In process, on the gateway's database.
    result = _sluice("logs", "--id", found_id, "--data-dir", str(data), "--json")
    assert result.returncode == 0, result.stderr
    (row,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert (row["request_id"], row["status"], row["key_name"]) == (found_id, 200, "log-reader")
    assert row["completion_tokens"] > 0 and row["stream_id"]
    result = _sluice("logs", "--key", "log-reader", "--status", "4xx", "--data-dir", str(data))
    assert result.returncode == 0 and request_id in result.stdout and found_id not in result.stdout
    # Through the admin API, for the master key only.
    result = _sluice("logs", "--url", server.url, "--id", found_id, SLUICE_MASTER_KEY=MASTER)
    assert result.returncode == 0 and found_id in result.stdout, result.stderr
    refused = _sluice("logs", "--url", server.url, SLUICE_MASTER_KEY=secret)
    assert refused.returncode == 1 and "master key" in refused.stderr
    bad = _sluice("logs", "--since", "last tuesday", "--data-dir", str(data))
    assert bad.returncode == 2 and "--since" in bad.stderr


# -- alerts -----------------------------------------------------------------------------


@pytest.fixture
async def webhook() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        if len(received) >= 2:
            both.set()
        return web.Response(text="ok")

    both = asyncio.Event()
    _WEBHOOK_DONE.append(both)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}/hook", received
    finally:
        await runner.cleanup()


async def test_a_burst_of_upstream_errors_fires_and_resolves_the_error_rate_alert(
    tmp_path: Path,
    upstream: ServerProcess,
    webhook: tuple[str, list[dict[str, Any]]],
) -> None:
    url, received = webhook
    config = tmp_path / "alerts.toml"
    rules = (
        "\n[alerts]\nerror_rate = 0.5\nmin_requests = 5\nwindow_seconds = 2\n"
        f'evaluate_seconds = 0.2\nwebhook_url = "{url}"\n'
    )
    body = GATEWAY_CONFIG.format(upstream=upstream.url, dead_port=free_port(), blackhole_port=1)
    config.write_text(body + rules)
    env = base_env(SLUICE_DATA_DIR=str(tmp_path / "data"))
    with running(["serve", "--config", str(config)], tmp_path, name="alerts", env=env) as server:
        failing = {"sim": {"fail_status": 503, "key": new_key()}}
        statuses = [
            (await _ask(server, "unused", model="relay-slow", **failing))[0] for _ in range(8)
        ]
        assert set(statuses) == {503}
        health = await _until_health(server, lambda h: bool(h["alerts"]))
        assert health["status"] == "degraded"
        (alert,) = health["alerts"]
        assert alert["name"] == "error_rate" and alert["value"] == 1.0
        assert alert["threshold"] == 0.5
        # The window empties: resolved.
        health = await _until_health(server, lambda h: not h["alerts"])
        assert health["alerts"] == []
        await asyncio.wait_for(_WEBHOOK_DONE[-1].wait(), 5)
        log = server.output()
    assert [(r["alert"], r["state"]) for r in received] == [
        ("error_rate", "firing"),
        ("error_rate", "resolved"),
    ]
    assert received[0]["value"] == 1.0 and received[0]["window_seconds"] == 2
    assert log.count("alert error_rate firing") == 1
    assert log.count("alert error_rate resolved") == 1


async def _until_health(server: ServerProcess, condition: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(server.url + "/health") as response:
                health: dict[str, Any] = await response.json()
            if condition(health):
                return health
            assert time.monotonic() < deadline, health
            await asyncio.sleep(0.1)


async def test_what_the_client_chose_is_scrubbed_and_kept_on_one_line(
    logged: tuple[ServerProcess, Path],
) -> None:
    server, data = logged
    secret = await _key(server, "path-scrubber")
    leaked = "sk-proj-PATHSECRET1234567890abcdef"
    async with aiohttp.ClientSession() as session:
        for path in (f"/v1/conversations/{leaked}", "/v1/conversations/x%1b[2Jforged%0d%0aline"):
            async with session.get(
                server.url + path, headers={"Authorization": f"Bearer {secret}"}
            ) as response:
                assert response.status == 404
    await asyncio.sleep(1.5)
    output = server.output()
    assert "PATHSECRET" not in output and "\x1b" not in output
    lines = [json.loads(line) for line in output.splitlines() if '"path-scrubber"' in line]
    assert len(lines) == 2 and all("\r" not in line["path"] for line in lines)
    result = _sluice("logs", "--key", "path-scrubber", "--data-dir", str(data))
    assert result.returncode == 0 and "PATHSECRET" not in result.stdout
    assert "\x1b" not in result.stdout and result.stdout.count("\n") == 2


async def test_the_request_log_takes_odd_values_on_postgresql() -> None:
    """Values wider than their columns (a client's method, a long path) are clipped, so
    PostgreSQL, which enforces widths, never refuses a batch."""
    import time as clock

    from sluice.store.database import create_engine, database_url, migrate
    from sluice.store.request_log import RequestLogStore
    from sluice.telemetry.metrics import Metrics
    from sluice.telemetry.record import RequestRecord
    from sluice.telemetry.requests import Telemetry
    from tests.databases import postgres_database

    async with postgres_database() as url:
        engine = create_engine(database_url(url, None))
        try:
            await migrate(engine)
            store = RequestLogStore(engine)
            telemetry = Telemetry(Metrics(), store, {})
            for method in ("PROPPATCH", "MKCALENDAR", "GET"):
                record = RequestRecord(
                    new_key(), method, "other", "/" + "p" * 500, clock.monotonic(), clock.time()
                )
                record.status = 405
                telemetry.finish(record)
            await telemetry.flush()
            rows = await store.query(limit=10)
        finally:
            await engine.dispose()
    assert sorted(r["method"] for r in rows) == ["GET", "MKCALEND", "PROPPATC"]
    assert all(len(r["path"]) == 200 for r in rows) and telemetry.dropped == 0
