"""Several processes, one gateway: `--workers N` needs Redis (and works with it), and
workers or instances starting together on a fresh database migrate it once."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import aiohttp
import psutil
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from sluice.errors import ConfigError
from sluice.http.server import app_from_environment
from sluice.store.database import MIGRATIONS, async_url, create_engine, migrate
from tests.databases import postgres_database, sqlite_database
from tests.servers import ServerProcess, base_env, free_port, running

MASTER = "sk-master-" + secrets.token_hex(12)
HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()


# -- workers need shared state ----------------------------------------------------------


def test_workers_without_redis_are_refused(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sluice", "serve", "--workers", "2", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
        env=base_env(SLUICE_DATA_DIR=str(tmp_path)),
    )
    assert result.returncode == 2
    message = result.stderr.strip()
    assert "\n" not in message, "one line"
    assert "2 workers without Redis" in message and "SLUICE_REDIS_URL" in message
    assert "sessions" in message and "one worker" in message


def test_the_worker_factory_refuses_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_WORKERS", "3")
    monkeypatch.setenv("SLUICE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SLUICE_REDIS_URL", raising=False)
    with pytest.raises(ConfigError, match="3 workers without Redis"):
        app_from_environment()


async def test_two_workers_with_redis_share_keys_and_sessions(tmp_path: Path) -> None:
    env = base_env(
        SLUICE_MASTER_KEY=MASTER,
        SLUICE_REDIS_URL="redis://127.0.0.1:6379/0",
        SLUICE_REDIS_PREFIX="test-workers-" + secrets.token_hex(4),
    )
    with running(["serve", "--workers", "2"], tmp_path, name="workers", env=env) as server:
        workers = [
            child
            for child in psutil.Process(server.pid).children()
            if "spawn_main" in " ".join(child.cmdline())
            and "resource_tracker" not in " ".join(child.cmdline())
        ]
        assert len(workers) == 2, [c.cmdline() for c in workers]
        body = {"model": "sim-fast", "messages": [{"role": "user", "content": "hi"}]}
        # A new connection per request, so the kernel hands them to either worker.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            async with http.post(
                server.url + "/v1/admin/keys",
                json={"name": "w"},
                headers={"Authorization": f"Bearer {MASTER}"},
            ) as response:
                assert response.status == 200, await response.text()
                key = (await response.json())["key"]
            statuses = []
            for _ in range(20):
                async with http.post(
                    server.url + "/v1/chat/completions",
                    json=body,
                    headers={"Authorization": f"Bearer {key}"},
                ) as response:
                    statuses.append(response.status)
            assert statuses == [200] * 20
            # Sessions live in Redis: one opened on either worker is known to both.
            statuses = []
            for _ in range(5):
                async with http.post(server.url + "/v1/session", json={"key": key}) as response:
                    assert response.status == 200
                    cookie = response.cookies["sluice_session"].value
                for _ in range(4):
                    async with http.get(
                        server.url + "/v1/models", headers={"Cookie": f"sluice_session={cookie}"}
                    ) as response:
                        statuses.append(response.status)
            assert statuses == [200] * 20


# -- migrations under a lock ------------------------------------------------------------


def _migrate_at_once(url: str, processes: int = 4) -> list[BaseException]:
    """`processes` threads, each with its own event loop and engine, migrate together."""
    barrier = threading.Barrier(processes)
    errors: list[BaseException] = []

    async def one() -> None:
        engine = create_engine(async_url(url))
        try:
            barrier.wait(10)
            await migrate(engine)
        finally:
            await engine.dispose()

    def run() -> None:
        try:
            asyncio.run(one())
        except BaseException as exc:
            errors.append(exc)

    # Daemons: a deadlocked migration must fail the test, not hang the test run.
    threads = [threading.Thread(target=run, daemon=True) for _ in range(processes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    stuck = sum(thread.is_alive() for thread in threads)
    return [*errors, *([TimeoutError(f"{stuck} migrations never finished")] if stuck else [])]


async def _versions(url: str) -> list[str]:
    engine = create_engine(async_url(url))
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(text("SELECT version_num FROM alembic_version"))
            return [row[0] for row in rows]
    finally:
        await engine.dispose()


async def test_concurrent_migrations_on_a_fresh_postgres_database() -> None:
    async with postgres_database() as url:
        errors = await asyncio.to_thread(_migrate_at_once, url)
        assert errors == []
        assert await _versions(url) == [HEAD]


async def test_concurrent_migrations_on_a_fresh_sqlite_file(tmp_path: Path) -> None:
    url = sqlite_database(tmp_path)
    errors = await asyncio.to_thread(_migrate_at_once, url)
    assert errors == []
    assert await _versions(url) == [HEAD]


def _start_four_at_once(tmp_path: Path, env: dict[str, str]) -> None:
    servers = []
    for n in range(4):
        port = free_port()
        args = ["serve", "--port", str(port)]
        servers.append(ServerProcess(args, port, tmp_path / f"gw{n}.log", env))
    failures: list[BaseException] = []

    def start(server: ServerProcess) -> None:
        try:
            server.start(timeout=60)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=start, args=(server,)) for server in servers]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
        assert failures == []
    finally:
        for server in servers:
            if server.process is not None:
                server.stop()


@pytest.mark.slow
async def test_four_gateways_start_together_on_a_fresh_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    await asyncio.to_thread(_start_four_at_once, tmp_path, base_env(SLUICE_DATA_DIR=str(data)))
    with sqlite3.connect(data / "sluice.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]


@pytest.mark.slow
async def test_four_gateways_start_together_on_a_fresh_postgres_database(tmp_path: Path) -> None:
    async with postgres_database() as url:
        env = base_env(SLUICE_DATABASE_URL=url, SLUICE_DATA_DIR=str(tmp_path / "data"))
        await asyncio.to_thread(_start_four_at_once, tmp_path, env)
        assert await _versions(url) == [HEAD]
