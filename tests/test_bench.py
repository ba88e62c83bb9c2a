"""`sluice bench` runs end to end on tiny loads (the numbers themselves belong in
docs/BENCHMARKS.md, not in assertions)."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.servers import base_env, free_port


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    ports = ["--port", str(free_port()), "--upstream-port", str(free_port())]
    return subprocess.run(
        [sys.executable, "-m", "sluice", "bench", *ports, *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=base_env(),
    )


def test_bench_reports_latency_and_cpu_per_chunk() -> None:
    result = bench("--streams", "5", "--rounds", "2", "--chunks", "10", "--tps", "50", "--no-floor")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "completed streams" in out and "10/10" in out
    for row in ("TTFT p50 (ms)", "TTFT p99 (ms)", "inter-token p99 (ms)", "chunks/s"):
        assert row in out
    cpu = re.search(r"= ([0-9.]+) us per chunk", out)
    assert cpu is not None and float(cpu.group(1)) > 0


def test_bench_hold_reports_memory_per_stream() -> None:
    result = bench("--hold", "20")
    assert result.returncode == 0, result.stderr
    assert "20 streams open at once" in result.stdout
    assert re.search(r"memory per open stream: [0-9.]+ KB", result.stdout)
