"""The app factory: `sluice.http:create_app` under uvicorn, gunicorn and granian run
unchanged, streams a chat completion to the official SDK, and drains on SIGTERM — also
under `sluice serve --workers N`, where every worker ends its streams in-band."""

from __future__ import annotations

import asyncio
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import openai
import psutil
import pytest

from sluice.errors import ConfigError
from sluice.http import create_app
from tests.servers import base_env, free_port, running

CONFIG = """
[[models]]
name = "fast"
provider = "sim"
options = { ttft_ms = 5, tokens_per_second = 2000, length = 40 }

[[models]]
name = "slow"
provider = "sim"
options = { ttft_ms = 5, tokens_per_second = 8, length = 400 }
"""

#: Each server's own command line, as an operator would type it.
SERVERS = {
    "uvicorn": ["-m", "uvicorn", "--factory", "sluice.http:create_app", "--port", "{port}"],
    "gunicorn": [
        "-m",
        "gunicorn",
        "-k",
        "uvicorn.workers.UvicornWorker",
        "--bind",
        "127.0.0.1:{port}",
        "sluice.http:create_app()",
    ],
    "granian": [
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--factory",
        "--port",
        "{port}",
        "sluice.http:create_app",
    ],
}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "sluice.toml"
    path.write_text(CONFIG)
    return path


@contextmanager
def server_process(
    argv: list[str], port: int, log: Path, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, *[a.format(port=port) for a in argv]],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_ready(process, f"http://127.0.0.1:{port}", log)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_ready(process: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url + "/health/ready", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server not ready in {timeout} s:\n{log.read_text(errors='replace')}")


def client(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=30)


async def started_stream(
    sdk: openai.AsyncOpenAI,
) -> tuple[openai.AsyncStream[openai.types.chat.ChatCompletionChunk], list[str]]:
    """A slow stream with its first words read: in flight on the server."""
    stream = await sdk.chat.completions.create(
        model="slow", messages=[{"role": "user", "content": "Tell a long story"}], stream=True
    )
    text: list[str] = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text.append(chunk.choices[0].delta.content)
            if len(text) >= 2:
                break
    return stream, text


async def ended_in_band(
    stream: openai.AsyncStream[openai.types.chat.ChatCompletionChunk], text: list[str]
) -> str:
    """Reads to the end; returns the in-band error's code (the SDK raises it)."""
    with pytest.raises(openai.APIError) as raised:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text.append(chunk.choices[0].delta.content)
    body = raised.value.body
    assert isinstance(body, dict), body
    return str(body["code"])


@pytest.mark.slow
@pytest.mark.parametrize("server", sorted(SERVERS))
async def test_each_server_runs_the_factory_and_drains_on_sigterm(
    server: str, tmp_path: Path, config: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = base_env(
        SLUICE_CONFIG=str(config),
        SLUICE_DATA_DIR=str(tmp_path / "data"),
        SLUICE_DRAIN_SECONDS="1.5",
    )
    with server_process(SERVERS[server], port, tmp_path / f"{server}.log", env) as process:
        sdk = client(url)
        # A whole answer, streamed through the SDK unchanged.
        chunks = [
            chunk
            async for chunk in await sdk.chat.completions.create(
                model="fast", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        ]
        assert chunks[-1].choices[0].finish_reason == "stop"
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        # SIGTERM with a stream in flight: it gets drain_seconds, then the in-band record.
        stream, text = await started_stream(sdk)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert await ended_in_band(stream, text) == "shutting_down"
        took = time.monotonic() - signalled
        assert 1.2 < took < 6, f"the drain deadline is 1.5 s, the stream ended after {took:.1f} s"
        assert len(text) > 2, "the stream kept flowing while draining"
        await sdk.close()
        # Each server exits by itself once the gateway drained (0, or uvicorn's re-raised
        # SIGTERM).
        assert await asyncio.to_thread(process.wait, 20) in (0, -signal.SIGTERM)
    log = (tmp_path / f"{server}.log").read_text()
    assert "ended 1 unfinished stream(s)" in log


@pytest.mark.slow
async def test_every_worker_drains_in_band(tmp_path: Path, config: Path) -> None:
    env = base_env(
        SLUICE_REDIS_URL="redis://127.0.0.1:6379/0",
        SLUICE_REDIS_PREFIX="test-factory-" + secrets.token_hex(4),
        SLUICE_DRAIN_SECONDS="1.5",
    )
    args = ["serve", "--config", str(config), "--workers", "2"]
    with running(args, tmp_path, name="workers", env=env) as server:
        workers = [
            child
            for child in psutil.Process(server.pid).children()
            if "spawn_main" in " ".join(child.cmdline())
            and "resource_tracker" not in " ".join(child.cmdline())
        ]
        assert len(workers) == 2
        streams = []
        # A client per stream (a connection each), until each worker serves at least one.
        for _ in range(40):
            sdk = client(server.url)
            streams.append((sdk, *await started_stream(sdk)))
            holding = [
                sum(
                    1
                    for c in worker.net_connections("tcp")
                    if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr[1] == server.port
                )
                for worker in workers
            ]
            if all(holding):
                break
        assert all(holding), f"connections per worker: {holding}"
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        codes = await asyncio.gather(*(ended_in_band(stream, text) for _, stream, text in streams))
        assert codes == ["shutting_down"] * len(streams)
        for sdk, _, _ in streams:
            await sdk.close()
        assert await asyncio.to_thread(server.process.wait, 20) in (0, -signal.SIGTERM)
    assert server.output().count("ended") >= 2, "each worker ended its own streams"


def test_the_factory_refuses_a_servers_workers_without_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # uvicorn --workers and gunicorn -w default to WEB_CONCURRENCY: the app sees it.
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    monkeypatch.setenv("SLUICE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("SLUICE_REDIS_URL", raising=False)
    monkeypatch.delenv("SLUICE_WORKER_SETTINGS", raising=False)
    with pytest.raises(ConfigError, match=r"4 workers without Redis.*SLUICE_REDIS_URL"):
        create_app()
