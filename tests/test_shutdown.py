"""Graceful shutdown: SIGTERM drains active streams, then ends the rest in-band."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import aiohttp

from sluice.wire.sse import SSEDecoder
from tests.faults import new_key, upstream_saw
from tests.servers import ServerProcess, base_env, running


def stream_body(key: str, tokens_per_second: float) -> dict[str, object]:
    return {
        "model": "relay",
        "stream": True,
        "messages": [{"role": "user", "content": "Explain graceful shutdown"}],
        "sim": {"tokens_per_second": tokens_per_second, "length": 60, "key": key},
    }


async def open_stream(
    session: aiohttp.ClientSession, url: str, key: str, tps: float
) -> tuple[aiohttp.ClientResponse, SSEDecoder, list[str]]:
    response = await session.post(url + "/v1/chat/completions", json=stream_body(key, tps))
    decoder = SSEDecoder()
    records: list[str] = []
    async for piece in response.content.iter_any():
        records += [e.data for e in decoder.feed(piece)]
        if len(records) >= 3:
            break
    return response, decoder, records


async def finish(
    response: aiohttp.ClientResponse, decoder: SSEDecoder, records: list[str]
) -> list[str]:
    async for piece in response.content.iter_any():
        records += [e.data for e in decoder.feed(piece)]
    return records


async def test_sigterm_lets_active_streams_finish(
    tmp_path: Path, gateway_config: Path, upstream: ServerProcess
) -> None:
    env = base_env(SLUICE_DRAIN_SECONDS="10")
    args = ["serve", "--config", str(gateway_config)]
    with running(args, tmp_path, name="drain", env=env) as server:
        async with aiohttp.ClientSession() as session:
            response, decoder, records = await open_stream(session, server.url, new_key(), 40)
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            async with aiohttp.ClientSession() as fresh:
                async with fresh.get(server.url + "/health/live") as live:
                    assert live.status == 503
                    assert (await live.json())["status"] == "draining"
                async with fresh.post(
                    server.url + "/v1/chat/completions", json=stream_body(new_key(), 40)
                ) as refused:
                    assert refused.status == 503
                    assert (await refused.json())["error"]["code"] == "shutting_down"
                    assert refused.headers["Retry-After"] == "1"
            records = await finish(response, decoder, records)
        assert records[-1] == "[DONE]"
        # uvicorn re-raises the SIGTERM it handled once it is done, as the exit status.
        assert server.process.wait(15) in (0, -signal.SIGTERM)


async def test_sigterm_ends_streams_past_the_drain_in_band(
    tmp_path: Path, gateway_config: Path, upstream: ServerProcess
) -> None:
    key = new_key()
    env = base_env(SLUICE_DRAIN_SECONDS="0.5")
    args = ["serve", "--config", str(gateway_config)]
    with running(args, tmp_path, name="cut", env=env) as server:
        async with aiohttp.ClientSession() as session:
            response, decoder, records = await open_stream(session, server.url, key, 5)
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            records = await finish(response, decoder, records)
        assert "[DONE]" not in records
        error = json.loads(records[-1])["error"]
        assert error["code"] == "shutting_down"
        # uvicorn re-raises the SIGTERM it handled once it is done, as the exit status.
        assert server.process.wait(15) in (0, -signal.SIGTERM)
    seen = upstream_saw(upstream, key)
    assert seen["disconnected"] == 1 and seen["completed"] == 0
