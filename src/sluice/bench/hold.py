"""``sluice bench --hold N``: memory per open stream.

N streams are opened through the gateway to a `sluice sim` upstream pacing one token a
second, and held open while the gateway's resident memory is read; the growth over the
idle baseline, divided by N, is what one open stream costs.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from dataclasses import dataclass

import aiohttp
import psutil


@dataclass(frozen=True)
class HoldReport:
    streams: int
    opened: int
    baseline_rss: int
    held_rss: int
    after_rss: int
    seconds_to_open: float

    @property
    def per_stream_kb(self) -> float:
        return (self.held_rss - self.baseline_rss) / max(1, self.opened) / 1024

    def render(self) -> str:
        mib = 1024 * 1024
        return "\n".join(
            [
                f"sluice bench --hold {self.streams}: {self.opened} streams open at once "
                f"(opened in {self.seconds_to_open:.1f} s)",
                f"gateway RSS idle {self.baseline_rss / mib:.1f} MiB, with the streams open "
                f"{self.held_rss / mib:.1f} MiB, after they closed {self.after_rss / mib:.1f} MiB",
                f"memory per open stream: {self.per_stream_kb:.1f} KB",
            ]
        )


def _running(url: str) -> int:
    with urllib.request.urlopen(url + "/health/live", timeout=5) as response:
        streams: int = json.load(response)["streams"]["running"]
        return streams


async def hold(url: str, pid: int, streams: int) -> HoldReport:
    process = psutil.Process(pid)
    baseline = process.memory_info().rss
    body = {
        "model": "bench",
        "stream": True,
        "messages": [{"role": "user", "content": "Hold this stream open."}],
    }
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None)
    opened: list[aiohttp.ClientResponse] = []
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def open_one() -> None:
            response = await session.post(url + "/v1/chat/completions", json=body)
            await response.content.readany()  # the first chunk: the stream is live
            opened.append(response)

        gate = asyncio.Semaphore(200)  # open them briskly, not all in one burst

        async def gated() -> None:
            async with gate:
                await open_one()

        await asyncio.gather(*(gated() for _ in range(streams)), return_exceptions=True)
        seconds = time.monotonic() - started
        running = await asyncio.to_thread(_running, url)
        await asyncio.sleep(1.0)
        held = process.memory_info().rss
        for response in opened:
            response.close()
    await asyncio.sleep(3.0)
    after = process.memory_info().rss
    return HoldReport(streams, running, baseline, held, after, seconds)
