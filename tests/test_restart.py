"""A crash mid-answer loses at most about a second of text: kill the server while it
streams, start it again on the same store, and find the partial answer saved."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from sluice.wire.sse import SSEDecoder
from tests.databases import postgres_database
from tests.servers import ServerProcess, base_env, free_port, running


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_env(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[dict[str, str]]:
    if request.param == "sqlite":
        yield base_env(SLUICE_DATA_DIR=str(tmp_path / "data"))
        return
    async with postgres_database() as url:
        yield base_env(SLUICE_DATABASE_URL=url)


async def test_partial_answer_survives_a_crash(
    tmp_path: Path, gateway_config: Path, upstream: ServerProcess, store_env: dict[str, str]
) -> None:
    port = free_port()
    args = ["serve", "--config", str(gateway_config)]
    received: list[tuple[float, str]] = []
    with running(args, tmp_path, name="crash", env=store_env, port=port) as server:
        body = {
            "message": "A long answer, please",
            "model": "relay",
            "options": {"sim": {"tokens_per_second": 10, "length": 400}},
        }
        async with aiohttp.ClientSession() as session:
            response = await session.post(server.url + "/chat", json=body)
            decoder = SSEDecoder()
            start: dict[str, str] = {}
            async for piece in response.content.iter_any():
                for event in decoder.feed(piece):
                    frame = json.loads(event.data)
                    if frame["type"] == "start":
                        start = frame
                    elif frame["type"] == "content":
                        received.append((time.monotonic(), frame["content"]))
                if len(received) >= 30:
                    break
            killed_at = time.monotonic()
            server.stop(signal.SIGKILL)
            response.close()
    text = "".join(piece for _, piece in received)
    # What the client had a good second and a half before the crash must be on disk.
    settled = "".join(piece for at, piece in received if at < killed_at - 1.5)
    with running(args, tmp_path, name="after-crash", env=store_env, port=port) as server:
        async with aiohttp.ClientSession() as session:
            url = f"{server.url}/v1/conversations/{start['conversation_id']}"
            async with session.get(url) as reply:
                saved = await reply.json()
    answer = saved["messages"][-1]
    assert answer["id"] == start["message_id"]
    assert answer["status"] == "incomplete", "a restart marks the dead answer incomplete"
    assert len(settled) > 0
    assert answer["content"].startswith(settled)
    assert text.startswith(answer["content"])
