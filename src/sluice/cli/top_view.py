"""What ``sluice top`` shows, made from what it scraped: pure, no I/O, no clock.

::

    GET /metrics ──> counters_from(text, at) ──> Counters ─┐
                                    rates(before, after) ──┼─> Frame ──> render(frame)
    GET /v1/admin/streams ──> rows_from(body) ──> rows ────┤
    GET /health ──> alerts_from(body) ──> alerts ──────────┘

Rates are counter deltas over the time between two scrapes (a counter that went down
means the gateway restarted: all count from zero again, as Prometheus's ``rate`` has
it). Every
string that came from the gateway is shown as plain text, control characters replaced,
length bounded: a key's name is whatever an admin typed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

_LONGEST = 60

#: Routes left out of the request and error rates: what watchers poll (this view's own
#: three looks a second among them) would make an idle gateway look busy, and
#: ``/health``'s 503 while degraded would count as a server error every second.
WATCHING_ROUTES = frozenset({"health", "metrics", "admin"})


@dataclass(frozen=True, slots=True)
class Counters:
    """The counters one ``/metrics`` scrape read, and when (a monotonic clock)."""

    at: float
    requests: float = 0.0
    client_errors: float = 0.0  # 4xx
    server_errors: float = 0.0  # 5xx
    output_tokens: float = 0.0


@dataclass(frozen=True, slots=True)
class Rates:
    """Per second, between two scrapes."""

    requests: float
    client_errors: float
    server_errors: float
    output_tokens: float


@dataclass(frozen=True, slots=True)
class StreamRow:
    id: str
    model: str
    served_by: str | None
    who: str
    age: float
    tokens: int
    tokens_per_second: float | None
    ttft: float | None
    state: str
    subscribers: int
    policy: str


@dataclass(frozen=True, slots=True)
class Alert:
    name: str
    state: str
    value: str
    threshold: str

    @property
    def firing(self) -> bool:
        return self.state == "firing"


@dataclass(frozen=True, slots=True)
class Frame:
    """Everything one refresh draws."""

    url: str
    rows: list[StreamRow] = field(default_factory=list)
    running: int = 0
    retained: int = 0
    pid: int | None = None
    counters: Counters | None = None
    rates: Rates | None = None
    #: ``/health``'s status ("ok", "degraded", ...), None when it could not be read.
    status: str | None = None
    #: None: the gateway reports no alerts at all (an older one); [] none firing.
    alerts: list[Alert] | None = None
    #: What could not be read this time ("metrics: HTTP 403"), shown in the header.
    problems: list[str] = field(default_factory=list)


def counters_from(text: str, at: float) -> Counters:
    """The request, error and output-token counters of a Prometheus text scrape (every
    worker's, merged by the gateway), ``WATCHING_ROUTES`` left out. Raises ValueError
    for text that is not one."""
    requests = client = server = output = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "sluice_requests_total"
                and sample.labels.get("route") not in WATCHING_ROUTES
            ):
                requests += sample.value
                status = sample.labels.get("status_class")
                if status == "5xx":
                    server += sample.value
                elif status == "4xx":
                    client += sample.value
            elif (
                sample.name == "sluice_tokens_total"
                and sample.labels.get("gen_ai_token_type") == "output"
            ):
                output += sample.value
    return Counters(at, requests, client, server, output)


def rates(before: Counters | None, after: Counters) -> Rates | None:
    """Per-second rates between two scrapes; None with one scrape or no time between.
    Any counter going down means the gateway restarted: every counter then counts from
    zero (one that happens to be higher again did not just grow by the difference)."""
    if before is None:
        return None
    seconds = after.at - before.at
    if seconds <= 0:
        return None
    was, now = _figures(before), _figures(after)
    if any(b > a for b, a in zip(was, now, strict=True)):
        was = (0.0,) * len(now)
    requests, client, server, output = ((a - b) / seconds for b, a in zip(was, now, strict=True))
    return Rates(requests, client, server, output)


def _figures(counters: Counters) -> tuple[float, ...]:
    return (
        counters.requests,
        counters.client_errors,
        counters.server_errors,
        counters.output_tokens,
    )


def plain(value: object, longest: int = _LONGEST) -> str:
    """A gateway's string made safe to draw: no control characters, bounded."""
    text = "".join(ch if ch.isprintable() else "?" for ch in str(value))
    return text if len(text) <= longest else text[: longest - 1] + "…"


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _who(row: dict[str, Any]) -> str:
    owner = plain(row.get("owner") or "?")
    name, key_id = row.get("key_name"), row.get("key_id")
    if name:
        return plain(name)
    if owner == "key" and key_id:
        return f"key {plain(key_id, 12)}"  # a key removed or not yet named
    return owner


def rows_from(body: dict[str, Any]) -> list[StreamRow]:
    """The streams of a ``/v1/admin/streams`` answer, oldest first; malformed entries
    are skipped, missing figures left empty."""
    rows = []
    data = body.get("data")
    for item in data if isinstance(data, list) else ():
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        served = item.get("served_by")
        tokens = _number(item.get("output_tokens"))
        subscribers = _number(item.get("subscribers"))
        rows.append(
            StreamRow(
                id=plain(item["id"]),
                model=plain(item.get("model") or "?"),
                served_by=plain(served) if served else None,
                who=_who(item),
                age=_number(item.get("age_seconds")) or 0.0,
                tokens=int(tokens or 0),
                tokens_per_second=_number(item.get("tokens_per_second")),
                ttft=_number(item.get("ttft_seconds")),
                state=plain(item.get("state") or "?", 12),
                subscribers=int(subscribers or 0),
                policy=plain(item.get("policy") or "?", 12),
            )
        )
    rows.sort(key=lambda row: row.age, reverse=True)
    return rows


def _figure(value: object) -> str:
    number = _number(value)
    if number is not None:
        return f"{number:.3g}"
    return plain(value, 20) if value is not None else "?"


def alerts_from(body: object) -> list[Alert] | None:
    """``/health``'s ``alerts`` list (each a dict with ``name``, ``state``, ``value``,
    ``threshold``); None when the gateway reports none at all. Firing ones first."""
    if not isinstance(body, dict) or not isinstance(body.get("alerts"), list):
        return None
    alerts = [
        Alert(
            name=plain(item.get("name") or "?"),
            state=plain(item.get("state") or "?", 12),
            value=_figure(item.get("value")),
            threshold=_figure(item.get("threshold")),
        )
        for item in body["alerts"]
        if isinstance(item, dict)
    ]
    alerts.sort(key=lambda alert: not alert.firing)
    return alerts


# -- drawing ----------------------------------------------------------------


def age_text(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def ttft_text(seconds: float | None) -> str:
    if seconds is None:
        return "…"  # still waiting for the first token
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _rate(value: float | None, unit: str = "/s") -> str:
    if value is None:
        return "–"
    return f"{value:.2f}{unit}" if value < 10 else f"{value:.0f}{unit}"


def header(frame: Frame) -> Text:
    line = Text()
    line.append("sluice top ", style="bold")
    line.append(plain(frame.url, 80), style="cyan")
    status = frame.status or "unknown"
    style = {"ok": "green", "degraded": "yellow"}.get(status, "red")
    line.append("  status ")
    line.append(plain(status, 20), style=style)
    line.append(f"  streams {frame.running} running · {frame.retained} retained")
    if frame.pid is not None:
        line.append(f" (pid {frame.pid})", style="dim")
    line.append("\n")
    r, c = frame.rates, frame.counters
    line.append(f"requests {_rate(r.requests if r else None)}")
    if c is not None:
        line.append(f" ({c.requests:.0f} total)", style="dim")
    line.append("  5xx ")
    line.append(_rate(r.server_errors if r else None), style="red" if r and r.server_errors else "")
    line.append("  4xx ")
    line.append(
        _rate(r.client_errors if r else None), style="yellow" if r and r.client_errors else ""
    )
    line.append(f"  output tokens {_rate(r.output_tokens if r else None)} finished")
    streaming = sum(row.tokens_per_second or 0.0 for row in frame.rows if row.state == "running")
    line.append(f", {_rate(streaming)} streaming")
    for problem in frame.problems:
        line.append("\n")
        line.append(plain(problem, 120), style="yellow")
    return line


def streams_table(frame: Frame) -> Table:
    table = Table(box=box.SIMPLE_HEAD, expand=False, pad_edge=False)
    table.add_column("STREAM", no_wrap=True)
    table.add_column("MODEL", no_wrap=True, overflow="ellipsis", max_width=40)
    table.add_column("KEY", no_wrap=True, overflow="ellipsis", max_width=24)
    table.add_column("AGE", justify="right", no_wrap=True)
    table.add_column("TOKENS", justify="right", no_wrap=True)
    table.add_column("TOK/S", justify="right", no_wrap=True)
    table.add_column("TTFT", justify="right", no_wrap=True)
    table.add_column("STATE", no_wrap=True)
    table.add_column("SUBS", justify="right", no_wrap=True)
    table.add_column("POLICY", no_wrap=True)
    for row in frame.rows:
        model = row.model
        if row.served_by and row.served_by != row.model:
            model = f"{row.model} → {row.served_by}"
        table.add_row(
            Text(row.id[:12]),
            Text(model),
            Text(row.who),
            age_text(row.age),
            str(row.tokens),
            _rate(row.tokens_per_second, ""),
            ttft_text(row.ttft),
            Text(row.state),
            str(row.subscribers),
            Text(row.policy),
        )
    if not frame.rows:
        table.caption = "no streams running"
    elif frame.running > len(frame.rows):
        table.caption = f"the oldest {len(frame.rows)} of {frame.running}"
    return table


def alerts_panel(alerts: list[Alert] | None) -> Panel:
    body = Text()
    if alerts is None:
        body.append("this gateway reports no alerts", style="dim")
    elif not alerts:
        body.append("none", style="dim")
    for i, alert in enumerate(alerts or ()):
        if i:
            body.append("\n")
        body.append(f"{alert.state:9}", style="bold red" if alert.firing else "green")
        body.append(f" {alert.name}  {alert.value} (threshold {alert.threshold})")
    firing = sum(1 for alert in alerts or () if alert.firing)
    return Panel(
        body,
        title=f"alerts · {firing} firing" if firing else "alerts",
        title_align="left",
        border_style="red" if firing else "dim",
        expand=True,
    )


def render(frame: Frame, hint: Iterable[str] = ()) -> RenderableType:
    """One frame; ``hint``: lines under it (the keys that work)."""
    parts: list[RenderableType] = [header(frame), streams_table(frame), alerts_panel(frame.alerts)]
    parts.extend(Text(line, style="dim") for line in hint)
    return Group(*parts)
