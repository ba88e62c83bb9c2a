"""Run the benchmark: a ``sluice sim`` upstream and a gateway in their own processes,
the same load sent straight to the upstream and through the gateway, and the gateway
process's CPU time divided by the SSE records it relayed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import psutil

from sluice.bench.load import LoadResult, drive, summary

GATEWAY_CONFIG = """
telemetry = {telemetry}
[[models]]
name = "bench"
provider = "openai"
base_url = "{upstream}/v1"
upstream_model = "sim"
"""

#: ``--guardrails on``: what a deployment that moderates typically runs on every answer.
GUARDRAILS_CONFIG = """
[[guardrails]]
name = "pii"
kind = "pii"
action = "mask"

[[guardrails]]
name = "banned"
kind = "keywords"
words = ["forbidden phrase", "ばくだん", "explode now"]
"""


@dataclass(frozen=True)
class BenchOptions:
    streams: int = 200
    rounds: int = 3
    chunks: int = 50
    ttft_ms: float = 0.0
    tokens_per_second: float = 100.0
    direct: bool = True
    port: int = 18080
    upstream_port: int = 19090
    floor_port: int = 18090
    jitter: float = 0.2
    floor: bool = True
    #: What a production gateway runs besides the relay: an API key with rate limits, a
    #: stream cap and a token budget (so every answer is admitted, metered and its usage
    #: recorded), metrics, the request log and its log line; off measures the relay alone.
    features: bool = True
    #: Input and output guardrails (PII masking, a keyword block) on every answer.
    guardrails: bool = False

    def gateway_config(self, upstream: str) -> str:
        config = GATEWAY_CONFIG.format(upstream=upstream, telemetry=str(self.features).lower())
        if self.streams > 900:
            # Room for every stream (by default 1,000 connections and 2,000 answers).
            room = self.streams + 100
            config = f"max_connections = {room}\nmax_running_generations = {room}\n" + config
        return config + (GUARDRAILS_CONFIG if self.guardrails else "")


@dataclass
class BenchReport:
    options: BenchOptions
    direct: LoadResult | None
    gateway: LoadResult
    cpu_seconds: float
    floor: LoadResult | None = None
    floor_cpu_seconds: float = 0.0

    @property
    def cpu_us_per_record(self) -> float:
        records = self.gateway.records
        return self.cpu_seconds / records * 1e6 if records else float("nan")

    def render(self) -> str:
        o = self.options
        lines = [
            f"sluice bench: {o.streams} concurrent streams, {o.streams * o.rounds} in all, "
            f"{o.chunks} tokens each; upstream `sluice sim` at ttft {o.ttft_ms:g} ms, "
            f"{o.tokens_per_second:g} tokens/s per stream (jitter {o.jitter:g}); "
            f"features {'on' if o.features else 'off'}; "
            f"guardrails {'on' if o.guardrails else 'off'}; each round starts its streams at once",
            "",
            f"{'':26}{'direct':>12}{'via gateway':>14}{'added':>10}",
        ]
        via = self.gateway
        rows: list[tuple[str, Callable[[LoadResult], float]]] = [
            ("TTFT p50 (ms)", lambda r: summary(r.ttfts())["p50"] * 1000),
            ("TTFT p90 (ms)", lambda r: summary(r.ttfts())["p90"] * 1000),
            ("TTFT p99 (ms)", lambda r: summary(r.ttfts())["p99"] * 1000),
            ("inter-token p50 (ms)", lambda r: summary(r.gaps())["p50"] * 1000),
            ("inter-token p99 (ms)", lambda r: summary(r.gaps())["p99"] * 1000),
            ("chunks/s", lambda r: r.records / r.wall),
        ]
        for label, measure in rows:
            through = measure(via)
            if self.direct is not None:
                straight = measure(self.direct)
                lines.append(f"{label:26}{straight:12.2f}{through:14.2f}{through - straight:10.2f}")
            else:
                lines.append(f"{label:26}{'-':>12}{through:14.2f}{'-':>10}")
        done = f"{via.completed}/{len(via.timings)}"
        lines += [
            f"{'completed streams':26}"
            + (f"{self.direct.completed}/{len(self.direct.timings)}" if self.direct else "-").rjust(
                12
            )
            + done.rjust(14),
            "",
            f"gateway CPU: {self.cpu_seconds:.3f} s for {via.records} relayed SSE records "
            f"= {self.cpu_us_per_record:.1f} us per chunk",
        ]
        if o.guardrails and via.completed:
            # The hold-back window merges tokens into fewer, larger records: per record
            # overstates the cost; per upstream chunk (role, tokens, finish) is comparable.
            upstream = via.completed * (o.chunks + 2)
            lines.append(
                f"with guardrails: {self.cpu_seconds / upstream * 1e6:.1f} us per upstream "
                f"chunk ({upstream} chunks in, {via.records} records out)"
            )
        if self.floor is not None and self.floor.records:
            per = self.floor_cpu_seconds / self.floor.records * 1e6
            lines.append(
                f"floor relay CPU (raw bytes, no parsing): {self.floor_cpu_seconds:.3f} s for "
                f"{self.floor.records} records = {per:.1f} us per chunk; the gateway adds "
                f"{self.cpu_us_per_record - per:.1f} us"
            )
            ttft = summary(self.floor.ttfts())
            lines.append(
                f"floor relay TTFT p50 {ttft['p50'] * 1000:.2f} ms, p99 {ttft['p99'] * 1000:.2f} ms"
            )
            mine = summary(via.ttfts())
            # A run too short for the floor's CPU clock to tick has no ratio to show.
            ratio = f"{self.cpu_us_per_record / per:.2f}x" if per else "n/a"
            lines.append(
                f"against the floor: CPU per chunk {ratio}; "
                f"TTFT added p50 {(mine['p50'] - ttft['p50']) * 1000:+.2f} ms, "
                f"p99 {(mine['p99'] - ttft['p99']) * 1000:+.2f} ms"
            )
        errors = via.errors()
        if errors:
            lines.append(f"errors through the gateway: {len(errors)} (first: {errors[0]})")
        return "\n".join(lines)


def _wait(url: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up within {timeout:g} s")


@contextmanager
def _process(
    args: list[str], health: str, module: str = "sluice", env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")},
            # The benchmark's gateway keeps its store out of the user's data directory.
            "SLUICE_DATA_DIR": os.path.join(tempfile.gettempdir(), "sluice-bench"),
            **(env or {}),
        },
    )
    try:
        _wait(health, process)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


#: ``--features on``'s key: limits and a budget far above what the run uses, so every
#: answer pays for admission, metering and its usage record but none is refused.
BENCH_KEY = [
    "--name", "bench", "--rpm", "10000000", "--tpm", "1000000000",
    "--max-concurrent", "100000", "--budget-tokens", "1000000000", "--period", "day",
]  # fmt: skip


def bench_key(config: Path, data_dir: str) -> str:
    """Create ``BENCH_KEY`` in the gateway's store (which turns authentication on)."""
    args = [sys.executable, "-m", "sluice", "keys", "create", *BENCH_KEY]
    args += ["--config", str(config), "--data-dir", data_dir]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    out = subprocess.run(args, capture_output=True, text=True, env=env, check=True).stdout
    secret = next((w for w in out.split() if w.startswith("sk-")), None)
    if secret is None:
        raise RuntimeError(f"`sluice keys create` printed no key: {out!r}")
    return secret


def run(options: BenchOptions) -> BenchReport:
    o = options
    upstream = f"http://127.0.0.1:{o.upstream_port}"
    gateway = f"http://127.0.0.1:{o.port}"
    sim_args = ["sim", "--port", str(o.upstream_port), "--ttft-ms", str(o.ttft_ms)]
    sim_args += ["--tps", str(o.tokens_per_second), "--jitter", str(o.jitter)]
    sim_args += ["--length", str(o.chunks + 50)]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.toml"
        config.write_text(o.gateway_config(upstream))
        key = bench_key(config, tmp) if o.features else None
        serve_args = ["serve", "--config", str(config), "--port", str(o.port)]
        with (
            _process(sim_args, upstream + "/health"),
            _process(
                serve_args, gateway + "/health/live", env={"SLUICE_DATA_DIR": tmp}
            ) as gateway_process,
        ):
            total = o.streams * o.rounds
            # Warm the path first (connection pools, caches).
            _drive(gateway, "bench", o.streams, o, key)
            direct = _drive(upstream, "sim", total, o) if o.direct else None
            via, cpu = _measured(gateway_process, gateway, "bench", total, o, key)
        floor = None
        floor_cpu = 0.0
        if o.floor:
            # The same load through the least a Python relay can do, on this machine.
            floor_url = f"http://127.0.0.1:{o.floor_port}"
            with (
                _process(sim_args, upstream + "/health"),
                _process(
                    [upstream, str(o.floor_port)], floor_url + "/health", "sluice.bench.floor"
                ) as relay,
            ):
                _drive(floor_url, "sim", o.streams, o)
                floor, floor_cpu = _measured(relay, floor_url, "sim", total, o)
    return BenchReport(options, direct, via, cpu, floor, floor_cpu)


def run_hold(options: BenchOptions, streams: int) -> str:
    """Open ``streams`` slow streams at once and report the gateway's memory per stream."""
    from sluice.bench.hold import hold

    o = options
    upstream = f"http://127.0.0.1:{o.upstream_port}"
    gateway = f"http://127.0.0.1:{o.port}"
    sim_args = ["sim", "--port", str(o.upstream_port), "--ttft-ms", "0", "--tps", "1"]
    sim_args += ["--length", "600"]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.toml"
        # Room for every held stream, as for as many concurrent ones.
        config.write_text(replace(o, streams=streams).gateway_config(upstream))
        serve_args = ["serve", "--config", str(config), "--port", str(o.port)]
        with (
            _process(sim_args, upstream + "/health"),
            _process(serve_args, gateway + "/health/live") as gateway_process,
        ):
            # Warm the gateway up (imports, pools) before the idle baseline is taken;
            # one token each, at this upstream's one token a second.
            asyncio.run(
                drive(
                    gateway + "/v1/chat/completions", model="bench", streams=20, total=20, chunks=1
                )
            )
            report = asyncio.run(hold(gateway, gateway_process.pid, streams))
    return report.render()


def _drive(url: str, model: str, total: int, o: BenchOptions, key: str | None = None) -> LoadResult:
    return asyncio.run(
        drive(
            url + "/v1/chat/completions",
            model=model,
            total=total,
            streams=o.streams,
            chunks=o.chunks,
            api_key=key,
        )
    )


def _measured(
    process: subprocess.Popen[bytes],
    url: str,
    model: str,
    total: int,
    o: BenchOptions,
    key: str | None = None,
) -> tuple[LoadResult, float]:
    """Run the load at ``url``; return it with the CPU seconds ``process`` spent on it."""
    measured = psutil.Process(process.pid)
    before = measured.cpu_times()
    result = _drive(url, model, total, o, key)
    after = measured.cpu_times()
    return result, (after.user - before.user) + (after.system - before.system)
