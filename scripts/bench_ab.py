"""A/B of the gateway's CPU per upstream chunk (token) (and time to first token) with a feature
on and off, alternating.

Usage: .venv/bin/python scripts/bench_ab.py REPEATS TOKENS_PER_SECOND STREAMS_PER_RUN
[telemetry|guardrails] (e.g. ``6 0 1500`` or ``8 100 400 guardrails``). The gateway is
restarted for every run; 50 streams at once, one warm-up round each. Prints each pair
and the medians (docs/BENCHMARKS.md). ``guardrails``: telemetry on in both, and
``sluice bench --guardrails on``'s rules (PII masking, a keyword block) in "on".
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import psutil

from sluice.bench.load import drive, summary
from sluice.bench.run import GUARDRAILS_CONFIG

#: The config's head (before [[models]]) and tail (after) for each side of each A/B.
FEATURES = {
    "telemetry": {"on": ("telemetry = true\n", ""), "off": ("telemetry = false\n", "")},
    "guardrails": {
        "on": ("telemetry = true\n", GUARDRAILS_CONFIG),
        "off": ("telemetry = true\n", ""),
    },
}
MODEL = (
    '[[models]]\nname = "bench"\nprovider = "openai"\n'
    'base_url = "http://127.0.0.1:19491/v1"\nupstream_model = "sim"\n'
)
GATEWAY = "http://127.0.0.1:18491"


def wait(url: str) -> None:
    for _ in range(200):
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.05)


def one_run(head: str, tail: str, streams: int) -> tuple[float, float]:
    """CPU per relayed chunk (µs) and time to first token p50 (ms)."""
    directory = tempfile.mkdtemp()
    path = os.path.join(directory, "gateway.toml")
    with open(path, "w") as config:
        config.write(head + MODEL + tail)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env["SLUICE_DATA_DIR"] = directory
    args = [sys.executable, "-m", "sluice", "serve", "--config", path, "--port", "18491"]
    gateway = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait(GATEWAY + "/health/live")
        url = GATEWAY + "/v1/chat/completions"
        asyncio.run(drive(url, model="bench", streams=50, total=100, chunks=50))
        process = psutil.Process(gateway.pid)
        before = process.cpu_times()
        result = asyncio.run(drive(url, model="bench", streams=50, total=streams, chunks=50))
        after = process.cpu_times()
        cpu = (after.user - before.user) + (after.system - before.system)
        # Per upstream token (50 per stream), not per record relayed: the guard's hold-back
        # merges tokens into fewer, larger records.
        return cpu / (result.completed * 50) * 1e6, summary(result.ttfts())["p50"] * 1000
    finally:
        gateway.terminate()
        gateway.wait()


def main() -> None:
    repeats, pace, streams = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    configs = FEATURES[sys.argv[4] if len(sys.argv) > 4 else "telemetry"]
    sim_args = ["sim", "--port", "19491", "--ttft-ms", "0", "--tps", pace, "--length", "100"]
    sim = subprocess.Popen(
        [sys.executable, "-m", "sluice", *sim_args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results: dict[str, list[float]] = {name: [] for name in configs}
    ttfts: dict[str, list[float]] = {name: [] for name in configs}
    try:
        wait("http://127.0.0.1:19491/health")
        for repeat in range(repeats):
            for name, (head, tail) in configs.items():
                cpu, ttft = one_run(head, tail, streams)
                results[name].append(cpu)
                ttfts[name].append(ttft)
            shown = {k: (round(v[-1], 1), round(ttfts[k][-1], 1)) for k, v in results.items()}
            print(repeat, "(µs per chunk, ttft p50 ms):", shown, flush=True)
    finally:
        sim.terminate()
    differences = [on - off for on, off in zip(results["on"], results["off"], strict=True)]
    print("median µs per chunk:", {k: round(statistics.median(v), 1) for k, v in results.items()})
    print("median ttft p50 ms:", {k: round(statistics.median(v), 1) for k, v in ttfts.items()})
    print("median of the pairwise differences:", round(statistics.median(differences), 1))


if __name__ == "__main__":
    main()
