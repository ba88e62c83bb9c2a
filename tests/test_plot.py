"""`sluice bench --plot DIR`: the SVG charts (a pure module, checked as XML) and one
small real run through the command line that writes them."""

from __future__ import annotations

import math
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from sluice.bench import svg
from sluice.bench.load import LoadResult, StreamTiming
from sluice.bench.plot import Measured, PlotRun, parse_concurrency
from sluice.bench.run import BenchOptions
from tests.servers import base_env, free_port

NS = {"svg": svg.SVG_NS}


def parse(text: str) -> ET.Element:
    return ET.fromstring(text)


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{{{svg.SVG_NS}}}text")]


def assert_static(text: str) -> None:
    """What GitHub shows as an image: no script, no handler, nothing fetched."""
    lowered = text.lower()
    assert "<script" not in lowered
    assert not re.search(r"\son\w+=", lowered)
    assert "href" not in lowered and "url(" not in lowered and "@import" not in lowered


BASE = svg.Chart(
    title="Time to first token <&> concurrency",
    x_label="concurrent streams",
    y_label="ms (log scale)",
    series=[
        svg.Series("direct p50", [(10, 0.4), (50, 2.5), (200, 30.0)]),
        svg.Series("gateway p99", [(10, 3.0), (50, 40.0), (200, 900.0)], svg.PALETTE[3], "2 3"),
    ],
    subtitle="each point: 3 x N streams",
    log_y=True,
    x_ticks=[10, 50, 100, 200],
)


def chart(**overrides: Any) -> svg.Chart:
    return replace(BASE, **overrides)


def test_chart_is_valid_static_svg_with_one_polyline_per_series() -> None:
    text = svg.render(chart())
    root = parse(text)
    assert root.tag == f"{{{svg.SVG_NS}}}svg"
    assert root.get("width") == "780" and root.get("height") == "440"
    assert root.get("viewBox") == "0 0 780 440"
    assert_static(text)
    lines = root.findall("svg:polyline", NS)
    assert [line.findtext("svg:title", namespaces=NS) for line in lines] == [
        "direct p50",
        "gateway p99",
    ]
    assert [len(line.get("points", "").split()) for line in lines] == [3, 3]
    assert lines[1].get("stroke-dasharray") == "2 3" and lines[0].get("stroke-dasharray") is None
    shown = texts(root)
    # Title escaped, not broken; axis labels, tick labels and legend present.
    assert "Time to first token <&> concurrency" in shown
    assert "concurrent streams" in shown and "ms (log scale)" in shown
    assert {"direct p50", "gateway p99"} <= set(shown)
    assert {"10", "50", "100", "200"} <= set(shown)


def test_log_scale_labels_decades_and_refuses_zero() -> None:
    shown = texts(parse(svg.render(chart())))
    # 0.4 .. 900 ms: 0.1 to 1000, a label per decade.
    assert {"0.1", "1", "10", "100", "1000"} <= set(shown)
    assert svg.log_ticks(3, 40) == [1, 2, 5, 10, 20, 50, 100]
    with pytest.raises(ValueError, match="log scale"):
        svg.render(chart(series=[svg.Series("zero", [(10, 0.0), (50, 1.0)])]))


def test_points_map_monotonically_and_stay_inside_the_plot_area() -> None:
    root = parse(svg.render(chart(log_y=False, y_label="ms")))
    for line in root.findall("svg:polyline", NS):
        coords = [tuple(map(float, p.split(","))) for p in line.get("points", "").split()]
        xs = [x for x, _ in coords]
        ys = [y for _, y in coords]
        assert xs == sorted(xs) and len(set(xs)) == len(xs)
        # Values rise, so on screen (y grows downwards) they climb.
        assert ys == sorted(ys, reverse=True)
        assert all(0 < x < 780 and 0 < y < 440 for x, y in coords)


def test_a_point_without_data_is_left_out_not_drawn_at_zero() -> None:
    series = [svg.Series("gaps", [(10, math.nan), (50, 2.0), (200, 4.0)])]
    root = parse(svg.render(chart(series=series, log_y=False)))
    (line,) = root.findall("svg:polyline", NS)
    assert len(line.get("points", "").split()) == 2
    assert len(root.findall("svg:circle", NS)) == 2


@pytest.mark.parametrize(
    ("lo", "hi"), [(0, 237), (0, 0.8), (0, 1), (12.5, 13.1), (0, 71234), (-3, 7)]
)
def test_linear_ticks_are_round_and_cover_the_range(lo: float, hi: float) -> None:
    ticks = svg.linear_ticks(lo, hi)
    assert ticks[0] <= lo and ticks[-1] >= hi
    assert 3 <= len(ticks) <= 11
    steps = {round(b - a, 9) for a, b in pairwise(ticks)}
    assert len(steps) == 1
    (step,) = steps
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert round(mantissa, 6) in (1, 2, 5)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10,50,100,200", (10, 50, 100, 200)), ("200, 10,10", (10, 200)), ("4", (4,))],
)
def test_parse_concurrency(text: str, expected: tuple[int, ...]) -> None:
    assert parse_concurrency(text) == expected


@pytest.mark.parametrize("text", ["", "0,10", "ten", "10,-5", ","])
def test_parse_concurrency_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="--concurrency"):
        parse_concurrency(text)


def measured(ttft_ms: float, gap_ms: float, cpu_seconds: float | None) -> Measured:
    timings = [
        StreamTiming(ttft=ttft_ms / 1000, gaps=[gap_ms / 1000] * 4, records=5, ok=True)
        for _ in range(4)
    ]
    return Measured(LoadResult(timings, wall=1.0), cpu_seconds)


def test_a_gateway_only_run_charts_the_gateway_and_falls_back_to_linear_at_zero() -> None:
    # --no-direct --no-floor; chunks that arrive together make a zero gap.
    run = PlotRun(
        BenchOptions(rounds=1, chunks=5, tokens_per_second=0),
        (2, 4),
        {"gateway": {2: measured(3.0, 0.0, 0.002), 4: measured(6.0, 0.0, 0.004)}},
    )
    charts = {name: parse(text) for name, text in run.charts().items()}
    assert [len(c.findall("svg:polyline", NS)) for c in charts.values()] == [3, 3, 1]
    assert "ms (log scale)" in texts(charts["ttft.svg"])
    assert "ms" in texts(charts["inter_token.svg"])
    assert "unpaced" in " ".join(texts(charts["ttft.svg"]))
    # 2 ms of CPU over 20 relayed records: 100 us each; 4 ms over 20: 200 us.
    table = run.table()
    assert re.search(r"^\s+2 gateway\s+3\.00\s+3\.00\s+3\.00\s+0\.00.*\s100\.0$", table, re.M)
    assert re.search(r"^\s+4 gateway\s+6\.00.*\s200\.0$", table, re.M)
    assert "direct" not in table and "floor" not in table
    assert "2 concurrent streams, 2 in all" in run.render()


def bench(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    ports = ["--port", str(free_port()), "--upstream-port", str(free_port())]
    ports += ["--floor-port", str(free_port())]
    return subprocess.run(
        [sys.executable, "-m", "sluice", "bench", *ports, *args],
        capture_output=True,
        text=True,
        timeout=180,
        # A fresh temporary directory: the bench gateway's store lives under it.
        env=base_env(TMPDIR=str(tmp)),
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "2,4"], "--concurrency goes with --plot"),
        (["--plot", "{charts}", "--hold", "5"], "--plot measures latency"),
        (["--plot", "{charts}", "--concurrency", "0"], "--concurrency '0'"),
    ],
)
def test_bench_plot_refuses_bad_combinations(tmp_path: Path, args: list[str], message: str) -> None:
    charts = tmp_path / "charts"
    result = bench(tmp_path, *(arg.format(charts=charts) for arg in args))
    assert result.returncode == 2
    assert message in result.stderr
    assert not charts.exists()


def test_bench_plot_writes_the_charts(tmp_path: Path) -> None:
    out = tmp_path / "charts"
    result = bench(
        tmp_path,
        *("--plot", str(out), "--concurrency", "2,4", "--rounds", "1"),
        *("--chunks", "5", "--tps", "0"),
    )
    assert result.returncode == 0, result.stderr
    # The usual report for each concurrency, then the charted figures.
    assert "2 concurrent streams, 2 in all" in result.stdout
    assert "4 concurrent streams, 4 in all" in result.stdout
    for streams in (2, 4):
        for target in ("direct", "floor relay", "gateway"):
            assert re.search(rf"^\s+{streams} {target}\s+[0-9.]+", result.stdout, re.M)
    polylines = {"ttft.svg": 9, "inter_token.svg": 9, "cpu_per_chunk.svg": 2}
    assert sorted(p.name for p in out.iterdir()) == sorted(polylines)
    for name, count in polylines.items():
        text = (out / name).read_text(encoding="utf-8")
        assert_static(text)
        root = parse(text)
        lines = root.findall("svg:polyline", NS)
        assert len(lines) == count
        # Every series has a point at both concurrencies (nothing went unmeasured).
        assert all(len(line.get("points", "").split()) == 2 for line in lines)
        assert "concurrent streams" in texts(root)
        assert f"wrote {out / name}" in result.stdout
