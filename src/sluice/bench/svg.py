"""Line charts as standalone SVG text: axes, ticks, a legend, an optional log scale.

Pure: numbers in, text out. GitHub shows an SVG from a repository as a static image, so
the chart is plain shapes and text — no scripts, no external fonts, stylesheets or
images — with its width, height and viewBox set, on an opaque background so it reads in
dark mode too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

SVG_NS = "http://www.w3.org/2000/svg"

# Colour-blind-safe (Okabe-Ito); callers pick one per thing compared.
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#d55e00", "#cc79a7", "#56b4e9", "#000000")
# stroke-dasharray values that stay apart at 2 px: solid, dashed, dotted.
DASHES: tuple[str | None, ...] = (None, "7 4", "2 3")

_INK = "#222222"
_AXIS = "#555555"
_GRID = "#e6e6e6"


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float]]
    color: str = PALETTE[0]
    dash: str | None = None


@dataclass(frozen=True)
class Chart:
    title: str
    x_label: str
    y_label: str
    series: Sequence[Series]
    subtitle: str = ""
    log_y: bool = False
    # Where the x axis is labelled; by default evenly spaced round numbers.
    x_ticks: Sequence[float] | None = None
    width: int = 780
    height: int = 440


@dataclass(frozen=True)
class _Frame:
    """The plot area in pixels and the two scales onto it."""

    left: float
    right: float
    top: float
    bottom: float
    x_lo: float
    x_hi: float
    y_lo: float
    y_hi: float
    log_y: bool
    y_ticks: tuple[float, ...]

    def x(self, value: float) -> float:
        pad = 14.0  # keep the end points off the axis line
        span = self.x_hi - self.x_lo
        return self.left + pad + (value - self.x_lo) / span * (self.right - self.left - 2 * pad)

    def y(self, value: float) -> float:
        if self.log_y:
            lo, hi, v = math.log10(self.y_lo), math.log10(self.y_hi), math.log10(value)
        else:
            lo, hi, v = self.y_lo, self.y_hi, value
        return self.bottom - (v - lo) / (hi - lo) * (self.bottom - self.top)


def linear_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round numbers (1, 2 or 5 times a power of ten apart) covering ``lo``..``hi``."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    start = math.floor(lo / step + 1e-9) * step
    stop = math.ceil(hi / step - 1e-9) * step
    digits = max(0, -math.floor(math.log10(step)) + 1)
    return [round(start + i * step, digits) for i in range(round((stop - start) / step) + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Powers of ten covering ``lo``..``hi`` (both > 0); 2 and 5 between them as well
    when the range spans at most two decades, so a short axis still has labels."""
    if lo <= 0 or hi <= 0:
        raise ValueError("a log scale needs values above zero")
    first = math.floor(math.log10(lo) + 1e-9)
    last = max(first + 1, math.ceil(math.log10(hi) - 1e-9))
    steps = (1, 2, 5) if last - first <= 2 else (1,)
    ticks = [m * 10.0**k for k in range(first, last) for m in steps]
    return [*ticks, 10.0**last]


def render(chart: Chart) -> str:
    """The chart as a complete SVG document."""
    points = [
        (x, y)
        for series in chart.series
        for x, y in series.points
        if math.isfinite(x) and math.isfinite(y)
    ]
    if chart.log_y and any(y <= 0 for _, y in points):
        raise ValueError(f"{chart.title}: a log scale cannot show values at or below zero")
    frame = _frame(chart, points)
    x_ticks = list(chart.x_ticks) if chart.x_ticks else linear_ticks(frame.x_lo, frame.x_hi)
    w, h = chart.width, chart.height
    parts = [
        f'<svg xmlns="{SVG_NS}" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        f'font-family="Helvetica, Arial, sans-serif" font-size="12" fill="{_INK}">',
        f"<title>{escape(chart.title)}</title>",
        f'<rect x="0" y="0" width="{w}" height="{h}" fill="#ffffff"/>',
        _text(frame.left, 22, chart.title, size=15, weight="bold"),
    ]
    if chart.subtitle:
        parts.append(_text(frame.left, 40, chart.subtitle, size=11, fill="#666666"))
    parts += _axes(chart, frame, x_ticks)
    for series in chart.series:
        parts += _line(series, frame)
    parts += _legend(chart, frame)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _frame(chart: Chart, points: list[tuple[float, float]]) -> _Frame:
    xs = [x for x, _ in points] + list(chart.x_ticks or ())
    ys = [y for _, y in points]
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x_hi <= x_lo:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    if chart.log_y:
        ticks = log_ticks(min(ys), max(ys)) if ys else [1.0, 10.0]
    else:
        # Latencies and costs read against zero.
        ticks = linear_ticks(min(0.0, *ys) if ys else 0.0, max(ys) if ys else 1.0)
    legend_width = 190
    return _Frame(
        left=72.0,
        right=float(chart.width - legend_width),
        top=60.0,
        bottom=float(chart.height - 56),
        x_lo=x_lo,
        x_hi=x_hi,
        y_lo=ticks[0],
        y_hi=ticks[-1],
        log_y=chart.log_y,
        y_ticks=tuple(ticks),
    )


def _axes(chart: Chart, f: _Frame, x_ticks: list[float]) -> list[str]:
    parts = []
    for tick in f.y_ticks:
        y = f.y(tick)
        parts.append(_rule(f.left, y, f.right, y, _GRID))
        parts.append(_text(f.left - 8, y + 4, _number(tick), anchor="end"))
    for tick in x_ticks:
        x = f.x(tick)
        parts.append(_rule(x, f.bottom, x, f.bottom + 5, _AXIS))
        parts.append(_text(x, f.bottom + 19, _number(tick), anchor="middle"))
    parts.append(_rule(f.left, f.bottom, f.right, f.bottom, _AXIS))
    parts.append(_rule(f.left, f.top, f.left, f.bottom, _AXIS))
    parts.append(_text((f.left + f.right) / 2, f.bottom + 42, chart.x_label, anchor="middle"))
    middle = (f.top + f.bottom) / 2
    parts.append(
        f'<text x="18" y="{middle:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 18 {middle:.1f})">{escape(chart.y_label)}</text>'
    )
    return parts


def _line(series: Series, f: _Frame) -> list[str]:
    # A point the run could not measure (no data: NaN) is left out, not drawn as zero.
    shown = [(x, y) for x, y in series.points if math.isfinite(x) and math.isfinite(y)]
    coords = " ".join(f"{f.x(x):.1f},{f.y(y):.1f}" for x, y in shown)
    dash = f' stroke-dasharray="{series.dash}"' if series.dash else ""
    parts = [
        f'<polyline fill="none" stroke={quoteattr(series.color)} stroke-width="2"'
        f'{dash} stroke-linejoin="round" points="{coords}">'
        f"<title>{escape(series.name)}</title></polyline>"
    ]
    parts += [
        f'<circle cx="{f.x(x):.1f}" cy="{f.y(y):.1f}" r="3" fill={quoteattr(series.color)}/>'
        for x, y in shown
    ]
    return parts


def _legend(chart: Chart, f: _Frame) -> list[str]:
    parts = []
    x = f.right + 22
    for index, series in enumerate(chart.series):
        y = f.top + 6 + index * 20
        dash = f' stroke-dasharray="{series.dash}"' if series.dash else ""
        parts.append(
            f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{x + 28:.1f}" y2="{y:.1f}" '
            f'stroke={quoteattr(series.color)} stroke-width="2"{dash}/>'
        )
        parts.append(_text(x + 36, y + 4, series.name))
    return parts


def _rule(x1: float, y1: float, x2: float, y2: float, color: str) -> str:
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
        f'stroke="{color}" stroke-width="1"/>'
    )


def _text(
    x: float,
    y: float,
    content: str,
    *,
    anchor: str = "start",
    size: int | None = None,
    weight: str | None = None,
    fill: str | None = None,
) -> str:
    extra = f' font-size="{size}"' if size else ""
    extra += f' font-weight="{weight}"' if weight else ""
    extra += f' fill="{fill}"' if fill else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{escape(content)}</text>'


def _number(value: float) -> str:
    return f"{value:g}"
