"""500 concurrent streams through a real gateway to a real sim upstream, with random
client disconnects and upstream failures. Every completed stream must be whole and in
order, every abandoned one cancelled upstream, and the gateway's memory must come back."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import psutil
import pytest

from sluice.wire.sse import SSEDecoder
from tests.faults import new_key
from tests.servers import ServerProcess, base_env, running

STREAMS = 500
CONFIG = """
stream_retention_seconds = 1
keepalive_seconds = 5

[[models]]
name = "echo"
provider = "openai"
base_url = "{upstream}/v1"
upstream_model = "sim-echo"
retry = {{ attempts = 2, backoff_initial = 0.05 }}
"""


@dataclass
class Plan:
    key: str
    prompt: str
    kind: str  # complete | disconnect | fail | drop
    leave_after: int = 0


@dataclass
class Outcome:
    status: int = 0
    text: str = ""
    done: bool = False
    error: str | None = None


@pytest.fixture(scope="module")
def load_gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: ServerProcess
) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("load")
    config = tmp / "load.toml"
    config.write_text(CONFIG.format(upstream=upstream.url))
    with running(["serve", "--config", str(config)], tmp, name="load", env=base_env()) as server:
        yield server


def plans(seed: int) -> list[Plan]:
    rng = random.Random(seed)
    result = []
    for i in range(STREAMS):
        words = " ".join(f"w{i}.{j}" for j in range(40))
        roll = rng.random()
        kind = (
            "complete"
            if roll < 0.6
            else "disconnect"
            if roll < 0.8
            else "fail"
            if roll < 0.9
            else "drop"
        )
        result.append(Plan(new_key(), words, kind, leave_after=rng.randint(3, 30)))
    return result


def sim_options(plan: Plan) -> dict[str, object]:
    options: dict[str, object] = {"key": plan.key, "tokens_per_second": 12, "ttft_ms": 50}
    if plan.kind == "fail":
        options["fail_status"] = 503
    elif plan.kind == "drop":
        options["drop_after"] = 20
    return options


async def run_one(session: aiohttp.ClientSession, url: str, plan: Plan) -> Outcome:
    outcome = Outcome()
    request = {
        "model": "echo",
        "stream": True,
        "messages": [{"role": "user", "content": plan.prompt}],
        "sim": sim_options(plan),
    }
    async with session.post(url + "/v1/chat/completions", json=request) as response:
        outcome.status = response.status
        if response.status != 200:
            return outcome
        decoder = SSEDecoder()
        records = 0
        async for piece in response.content.iter_any():
            for event in decoder.feed(piece):
                records += 1
                if event.data == "[DONE]":
                    outcome.done = True
                    continue
                chunk = json.loads(event.data)
                if "error" in chunk:
                    outcome.error = chunk["error"]["code"]
                    continue
                for choice in chunk["choices"]:
                    outcome.text += choice["delta"].get("content") or ""
            if plan.kind == "disconnect" and records >= plan.leave_after:
                response.close()
                return outcome
    return outcome


async def sim_stats(session: aiohttp.ClientSession, upstream: ServerProcess) -> dict[str, object]:
    async with session.get(upstream.url + "/sim/stats") as response:
        stats: dict[str, object] = await response.json()
        return stats


@pytest.mark.slow
async def test_500_streams_with_disconnects_and_failures(
    load_gateway: ServerProcess, upstream: ServerProcess
) -> None:
    process = psutil.Process(load_gateway.pid)
    # Two full rounds warm everything up (imports, pools, the allocator's working set,
    # SQLite's page cache as the request log and usage tables grow); the settled size
    # after them is the baseline the measured round must come back to. One round was
    # not enough: settled sizes measured after rounds 1-4 grew by 2.6, 0.2 and 0.4 MiB,
    # so a leak shows as steady growth per round, not as the first round's step. Each
    # round has its own client pool: uvicorn closes idle connections after 5 s, which
    # would race a pooled connection reused after the pause.
    for seed in (0, 2):
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            await asyncio.gather(*(run_one(session, load_gateway.url, p) for p in plans(seed)))
            await settle(session, load_gateway)
    baseline = process.memory_info().rss
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        peak_active = 0

        async def watch_upstream() -> None:
            nonlocal peak_active
            while True:
                async with session.get(load_gateway.url + "/health/live") as response:
                    running = (await response.json())["streams"]["running"]
                peak_active = max(peak_active, running)
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch_upstream())
        schedule = plans(seed=1)
        outcomes = await asyncio.gather(*(run_one(session, load_gateway.url, p) for p in schedule))
        peak_rss = process.memory_info().rss
        watcher.cancel()

        for plan, outcome in zip(schedule, outcomes, strict=True):
            if plan.kind == "complete":
                assert outcome.status == 200 and outcome.done, plan
                assert outcome.text == plan.prompt, "whole and in order"
            elif plan.kind == "fail":
                assert outcome.status == 503
            elif plan.kind == "drop":
                assert outcome.status == 200 and not outcome.done
                assert outcome.error is not None

        # Every abandoned stream was cancelled upstream (give the last ones a moment).
        leavers = [p for p in schedule if p.kind == "disconnect"]
        deadline = time.monotonic() + 5
        while True:
            stats = await sim_stats(session, upstream)
            keys = stats["keys"]
            assert isinstance(keys, dict)
            pending = [
                p for p in leavers if keys[p.key]["disconnected"] + keys[p.key]["completed"] != 1
            ]
            if not pending or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert not pending
        cancelled = sum(keys[p.key]["disconnected"] for p in leavers)
        # A client that left after the last token may see the upstream finish first.
        assert cancelled >= len(leavers) * 0.9
        assert peak_active >= 0.9 * STREAMS, f"only {peak_active} streams open at once"

        # Memory returns to baseline once the streams (and their replay window) are gone.
        await settle(session, load_gateway)
    after = process.memory_info().rss
    assert after - baseline <= 4 * 2**20, (
        f"baseline {baseline >> 20} MiB, peak {peak_rss >> 20} MiB, after {after >> 20} MiB"
    )


async def settle(session: aiohttp.ClientSession, gateway: ServerProcess) -> None:
    """Wait until the gateway holds no stream at all (running or replayable)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        async with session.get(gateway.url + "/health/live") as response:
            streams = (await response.json())["streams"]
        if streams == {"running": 0, "retained": 0}:
            await asyncio.sleep(1.5)  # the quiet-time trim runs a second later
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the gateway still holds streams: {streams}")
