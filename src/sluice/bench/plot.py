"""``sluice bench --plot DIR``: the same load at several concurrencies, sent straight to
the upstream, through the floor relay and through the gateway, drawn as SVG charts.

One ``sluice sim`` upstream, one gateway and one floor relay serve every concurrency:
they start once and are warmed once (at the widest concurrency, so connection pools
are as large as they will get), then each concurrency is measured on each target in
turn. Charts: time to first token and inter-token gap percentiles (p50, p90, p99)
against concurrency, and CPU per relayed chunk of the gateway and the floor.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

from sluice.bench import svg
from sluice.bench.load import LoadResult, summary
from sluice.bench.run import (
    BenchOptions,
    BenchReport,
    _drive,
    _measured,
    _process,
)

DEFAULT_CONCURRENCY = (10, 50, 100, 200)
TARGETS = ("direct", "floor", "gateway")
PERCENTILES = ("p50", "p90", "p99")
# One colour per target, one dash per percentile: a line's look names both.
_COLORS = {"direct": svg.PALETTE[0], "floor": svg.PALETTE[2], "gateway": svg.PALETTE[3]}
_DASHES = dict(zip(PERCENTILES, svg.DASHES, strict=True))
_LABELS = {"direct": "direct", "floor": "floor relay", "gateway": "gateway"}


def parse_concurrency(text: str) -> tuple[int, ...]:
    """``"10,50,100,200"`` -> (10, 50, 100, 200): positive, distinct, ascending."""
    try:
        values = {int(part) for part in text.split(",") if part.strip()}
    except ValueError:
        raise ValueError(f"--concurrency {text!r}: give whole numbers, e.g. 10,50,100") from None
    if not values or min(values) < 1:
        raise ValueError(f"--concurrency {text!r}: give one or more numbers of at least 1")
    return tuple(sorted(values))


@dataclass(frozen=True)
class Measured:
    """One target's load at one concurrency, with the relay's CPU (none for direct)."""

    load: LoadResult
    cpu_seconds: float | None = None

    @property
    def cpu_us_per_record(self) -> float:
        if self.cpu_seconds is None or not self.load.records:
            return math.nan
        return self.cpu_seconds / self.load.records * 1e6


@dataclass
class PlotRun:
    options: BenchOptions
    concurrency: tuple[int, ...]
    # target -> concurrency -> what was measured there
    results: dict[str, dict[int, Measured]] = field(default_factory=dict)

    def targets(self) -> list[str]:
        return [t for t in TARGETS if self.results.get(t)]

    def report(self, streams: int) -> BenchReport:
        """The usual one-concurrency report, from this run's figures."""
        direct = self.results.get("direct", {}).get(streams)
        floor = self.results.get("floor", {}).get(streams)
        gateway = self.results["gateway"][streams]
        return BenchReport(
            replace(self.options, streams=streams),
            direct.load if direct else None,
            gateway.load,
            gateway.cpu_seconds or 0.0,
            floor.load if floor else None,
            (floor.cpu_seconds or 0.0) if floor else 0.0,
        )

    def render(self) -> str:
        sections = [self.report(c).render() for c in self.concurrency]
        return "\n\n".join([*sections, self.table()])

    def table(self) -> str:
        """The charted figures in one table: what the SVGs show, as numbers."""
        lines = [
            "charted (ms; CPU in us per relayed chunk):",
            f"{'streams':>8} {'target':<12}"
            f"{'TTFT p50':>10}{'p90':>9}{'p99':>9}"
            f"{'gap p50':>10}{'p90':>9}{'p99':>9}{'CPU/chunk':>11}",
        ]
        for streams in self.concurrency:
            for target in self.targets():
                m = self.results[target][streams]
                ttft = summary(m.load.ttfts())
                gaps = summary(m.load.gaps())
                cpu = m.cpu_us_per_record
                figures = [ttft[p] * 1000 for p in PERCENTILES]
                figures += [gaps[p] * 1000 for p in PERCENTILES]
                widths = (10, 9, 9, 10, 9, 9)
                lines.append(
                    f"{streams:>8} {_LABELS[target]:<12}"
                    + "".join(f"{v:>{w}.2f}" for v, w in zip(figures, widths, strict=True))
                    + (f"{cpu:>11.1f}" if math.isfinite(cpu) else f"{'-':>11}")
                )
        return "\n".join(lines)

    def charts(self) -> dict[str, str]:
        """File name -> SVG text."""
        o = self.options
        pace = f"{o.tokens_per_second:g} tokens/s" if o.tokens_per_second else "unpaced"
        about = (
            f"each point: {o.rounds} x N streams, N at once, {o.chunks} tokens each; "
            f"upstream sluice sim, {o.ttft_ms:g} ms to first token, {pace}"
        )
        return {
            "ttft.svg": self._latency_chart(
                "Time to first token against concurrency", about, LoadResult.ttfts
            ),
            "inter_token.svg": self._latency_chart(
                "Inter-token latency against concurrency", about, LoadResult.gaps
            ),
            "cpu_per_chunk.svg": svg.render(
                svg.Chart(
                    title="CPU per relayed chunk against concurrency",
                    subtitle=about,
                    x_label="concurrent streams",
                    y_label="CPU per relayed chunk (µs)",
                    series=[
                        svg.Series(
                            _LABELS[target],
                            [
                                (c, self.results[target][c].cpu_us_per_record)
                                for c in self.concurrency
                            ],
                            color=_COLORS[target],
                        )
                        for target in ("floor", "gateway")
                        if self.results.get(target)
                    ],
                    x_ticks=self.concurrency,
                )
            ),
        }

    def _latency_chart(
        self, title: str, about: str, values: Callable[[LoadResult], list[float]]
    ) -> str:
        series = [
            svg.Series(
                f"{_LABELS[target]} {p}",
                [
                    (c, summary(values(self.results[target][c].load))[p] * 1000)
                    for c in self.concurrency
                ],
                color=_COLORS[target],
                dash=_DASHES[p],
            )
            for target in self.targets()
            for p in PERCENTILES
        ]
        # Latencies span decades (a fraction of a ms direct, hundreds through a saturated
        # relay): log scale, unless a percentile is zero (batched chunks arrive together).
        shown = [y for s in series for _, y in s.points if math.isfinite(y)]
        log_y = bool(shown) and min(shown) > 0
        return svg.render(
            svg.Chart(
                title=title,
                subtitle=about,
                x_label="concurrent streams",
                y_label="ms (log scale)" if log_y else "ms",
                series=series,
                log_y=log_y,
                x_ticks=self.concurrency,
            )
        )

    def write(self, directory: Path) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in self.charts().items():
            path = directory / name
            path.write_text(text, encoding="utf-8")
            written.append(path)
        return written


def run_plot(
    options: BenchOptions,
    concurrency: Sequence[int] = DEFAULT_CONCURRENCY,
    progress: Callable[[str], None] | None = None,
) -> PlotRun:
    o = options
    say = progress or (lambda _line: None)
    upstream = f"http://127.0.0.1:{o.upstream_port}"
    gateway = f"http://127.0.0.1:{o.port}"
    floor_url = f"http://127.0.0.1:{o.floor_port}"
    sim_args = ["sim", "--port", str(o.upstream_port), "--ttft-ms", str(o.ttft_ms)]
    sim_args += ["--tps", str(o.tokens_per_second), "--jitter", str(o.jitter)]
    sim_args += ["--length", str(o.chunks + 50)]
    plot = PlotRun(o, tuple(concurrency), {target: {} for target in TARGETS})
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as processes:
        config = Path(tmp) / "bench.toml"
        config.write_text(options.gateway_config(upstream))
        serve_args = ["serve", "--config", str(config), "--port", str(o.port)]
        processes.enter_context(_process(sim_args, upstream + "/health"))
        gateway_process = processes.enter_context(_process(serve_args, gateway + "/health/live"))
        relay = None
        if o.floor:
            relay = processes.enter_context(
                _process([upstream, str(o.floor_port)], floor_url + "/health", "sluice.bench.floor")
            )
        widest = replace(o, streams=max(plot.concurrency))
        say(f"warming up at {widest.streams} streams")
        _drive(gateway, "bench", widest.streams, widest)
        if relay is not None:
            _drive(floor_url, "sim", widest.streams, widest)
        for streams in plot.concurrency:
            at = replace(o, streams=streams)
            total = streams * o.rounds
            say(f"{streams} streams ({total} in all) on each target")
            if o.direct:
                plot.results["direct"][streams] = Measured(_drive(upstream, "sim", total, at))
            if relay is not None:
                plot.results["floor"][streams] = Measured(
                    *_measured(relay, floor_url, "sim", total, at)
                )
            plot.results["gateway"][streams] = Measured(
                *_measured(gateway_process, gateway, "bench", total, at)
            )
    return plot
