"""Drive concurrent streams at an OpenAI-compatible endpoint and time every chunk.

The client side of the benchmark: aiohttp (the lean client), the project's own SSE
decoder, and wall-clock stamps per record. It measures; it does not judge.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field

import aiohttp
import orjson

from sluice.wire.sse import SSEDecoder


@dataclass
class StreamTiming:
    ttft: float | None = None
    gaps: list[float] = field(default_factory=list)
    records: int = 0
    ok: bool = False
    error: str | None = None


@dataclass
class LoadResult:
    timings: list[StreamTiming]
    wall: float

    @property
    def completed(self) -> int:
        return sum(1 for t in self.timings if t.ok)

    @property
    def records(self) -> int:
        return sum(t.records for t in self.timings)

    def ttfts(self) -> list[float]:
        return [t.ttft for t in self.timings if t.ttft is not None]

    def gaps(self) -> list[float]:
        return [gap for t in self.timings for gap in t.gaps]

    def errors(self) -> list[str]:
        return [t.error for t in self.timings if t.error]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[position]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


async def one_stream(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> StreamTiming:
    timing = StreamTiming()
    decoder = SSEDecoder()
    start = time.perf_counter()
    last = start
    try:
        async with session.post(url, data=body, headers=headers) as response:
            if response.status != 200:
                timing.error = f"HTTP {response.status}"
                return timing
            async for piece in response.content.iter_any():
                now = time.perf_counter()
                for event in decoder.feed(piece):
                    if event.data == "[DONE]":
                        timing.ok = True
                        continue
                    timing.records += 1
                    if '"content"' in event.data and timing.ttft is None:
                        chunk = orjson.loads(event.data)
                        choices = chunk.get("choices") or [{}]
                        if choices[0].get("delta", {}).get("content"):
                            timing.ttft = now - start
                    elif timing.ttft is not None:
                        timing.gaps.append(now - last)
                    last = now
    except (aiohttp.ClientError, TimeoutError) as exc:
        timing.error = type(exc).__name__
    return timing


async def drive(
    url: str,
    *,
    model: str,
    streams: int,
    total: int,
    chunks: int,
    api_key: str | None = None,
    ramp: float = 0.0,
) -> LoadResult:
    """``total`` streams, at most ``streams`` at once, each asking for ``chunks`` tokens.

    With ``ramp`` seconds, the first ``streams`` start evenly spread over that time
    (then each finished stream makes room for the next), so the load is a steady
    ``streams`` open streams rather than a thundering herd of simultaneous requests."""
    body = orjson.dumps(
        {
            "model": model,
            "stream": True,
            "max_tokens": chunks,
            "messages": [{"role": "user", "content": "Benchmark the relay, please."}],
        }
    )
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=600)
    gate = asyncio.Semaphore(streams)

    async def gated(session: aiohttp.ClientSession, position: int) -> StreamTiming:
        if ramp and position < streams:
            await asyncio.sleep(ramp * position / streams)
        async with gate:
            return await one_stream(session, url, body, headers)

    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        timings = await asyncio.gather(*(gated(session, i) for i in range(total)))
    return LoadResult(list(timings), time.perf_counter() - started)
