"""``sluice bench --cache``: what a cache hit costs next to a miss.

A ``sluice sim`` upstream and a gateway with the response cache on, in their own
processes. The same set of distinct deterministic questions is sent twice at the same
concurrency: the first pass misses (every answer comes from the upstream and is stored),
the second hits (every answer is replayed from the cache). Reported: time to first token
and whole-answer time of each pass, the upstream calls each made (the sim's own count),
the gateway's RSS, and the cache's entries and bytes against its bound.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil

from sluice.bench.load import StreamTiming, one_stream, summary
from sluice.bench.run import BenchOptions, _process

_MASTER = "sk-bench-master-" + "0" * 16
_CONFIG = """
cache = "{backend}"
cache_memory_bytes = {bound}
[[models]]
name = "bench"
provider = "openai"
base_url = "{upstream}/v1"
upstream_model = "sim"
"""


@dataclass
class Pass:
    timings: list[StreamTiming]
    wall: float
    upstream_calls: int

    def line(self, name: str) -> str:
        ttft = summary([t.ttft for t in self.timings if t.ttft is not None])
        ok = sum(1 for t in self.timings if t.ok)
        return (
            f"{name:5} {ok}/{len(self.timings)} whole, upstream calls {self.upstream_calls:4}, "
            f"TTFT p50 {ttft['p50'] * 1000:7.2f} ms  p99 {ttft['p99'] * 1000:7.2f} ms, "
            f"wall {self.wall:6.2f} s"
        )


async def _pass(url: str, questions: int, streams: int, chunks: int, key: str) -> Pass:
    gate = asyncio.Semaphore(streams)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {_MASTER}"}

    async def one(session: aiohttp.ClientSession, n: int) -> StreamTiming:
        body = orjson.dumps(
            {
                "model": "bench",
                "stream": True,
                "temperature": 0,
                "max_tokens": chunks,
                "messages": [{"role": "user", "content": f"Question {n} of run {key}."}],
                "sim": {"key": key},
            }
        )
        async with gate:
            return await one_stream(session, url + "/v1/chat/completions", body, headers)

    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        timings = await asyncio.gather(*(one(session, n) for n in range(questions)))
    return Pass(list(timings), time.perf_counter() - started, 0)


def _get(url: str, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def run_cache(
    options: BenchOptions,
    *,
    questions: int,
    backend: str,
    bound: int = 64 << 20,
    redis_url: str = "redis://127.0.0.1:6379/0",
) -> str:
    o = options
    upstream = f"http://127.0.0.1:{o.upstream_port}"
    gateway = f"http://127.0.0.1:{o.port}"
    sim_args = ["sim", "--port", str(o.upstream_port), "--ttft-ms", str(o.ttft_ms)]
    sim_args += ["--tps", str(o.tokens_per_second), "--length", str(o.chunks + 50)]
    key = f"bench-{time.time_ns()}"
    env = {"SLUICE_MASTER_KEY": _MASTER}
    if backend == "redis":
        env |= {"SLUICE_REDIS_URL": redis_url, "SLUICE_REDIS_PREFIX": key}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.toml"
        config.write_text(_CONFIG.format(backend=backend, bound=bound, upstream=upstream))
        serve_args = ["serve", "--config", str(config), "--port", str(o.port)]
        with (
            _process(sim_args, upstream + "/health"),
            _process(serve_args, gateway + "/health/live", env=env) as process,
        ):
            measured = psutil.Process(process.pid)
            baseline = measured.memory_info().rss
            passes = []
            for _ in ("miss", "hit"):
                before = _calls(upstream, key)
                result = asyncio.run(_pass(gateway, questions, o.streams, o.chunks, key))
                result.upstream_calls = _calls(upstream, key) - before
                passes.append(result)
            rss = measured.memory_info().rss
            stats = _get(gateway + "/v1/admin/cache", {"Authorization": f"Bearer {_MASTER}"})
    miss, hit = passes
    return "\n".join(
        [
            f"sluice bench --cache {backend}: {questions} distinct deterministic questions "
            f"twice, {o.streams} at once, {o.chunks} tokens each; upstream "
            f"{o.ttft_ms:g} ms to first token, {o.tokens_per_second:g} tokens/s",
            miss.line("miss"),
            hit.line("hit"),
            f"cache: {stats['entries']} entries, {stats['bytes'] / 1024:.0f} KiB held "
            f"(bound {bound / 1024:.0f} KiB); hits {stats['hits']}, misses {stats['misses']}, "
            f"coalesced {stats['coalesced']}",
            f"gateway RSS {baseline / 2**20:.1f} MiB at start, {rss / 2**20:.1f} MiB after",
        ]
    )


def _calls(upstream: str, key: str) -> int:
    seen = _get(upstream + "/sim/stats")["keys"].get(key, {})
    return int(seen.get("attempts", 0))
