"""Prometheus metrics: one ``Metrics`` per process, fed once per answer and once per
request — never per chunk — and rendered at ``GET /metrics``.

Names follow the OpenTelemetry GenAI semantic conventions where one exists, converted as
Prometheus does (``gen_ai.server.time_to_first_token`` ->
``gen_ai_server_time_to_first_token_seconds``); the rest are ``sluice_*``. Labels are
bounded: configured model names, provider kinds, fixed route names, status classes,
error classes and reasons from fixed sets — never a key, a prompt or an id.

Two views of latency, so the gateway's own cost is a metric: the *server* view is what
the upstream delivered (first token after the request reached the engine, retries
included), the *client* view what the client got (first byte written to it after its
request arrived). ``sluice_gateway_overhead_seconds`` is their difference per request.

With ``--workers N`` the values live in prometheus_client's multiprocess files
(``PROMETHEUS_MULTIPROC_DIR``, set by ``sluice serve`` before the workers start), and
``render`` merges every worker's.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
from typing import TYPE_CHECKING

import psutil
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

from sluice.telemetry.record import current as current_record

if TYPE_CHECKING:
    from sluice.engine.generation import Generation
    from sluice.guard.rules import Match

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_PER_TOKEN = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1.0)
_OVERHEAD = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
# OpenTelemetry's advice for gen_ai.client.token.usage.
_TOKENS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)
_DURATION = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


class Metrics:
    def __init__(self, *, providers: dict[str, str] | None = None) -> None:
        #: Model name -> provider kind, for the ``gen_ai_provider_name`` label.
        self._providers = providers or {}
        registry = self.registry = CollectorRegistry(auto_describe=True)
        if multiprocess():
            forget_dead_workers()
        else:
            # process_cpu_seconds_total, process_resident_memory_bytes, open fds, ...
            ProcessCollector(registry=registry)
        model = ("gen_ai_request_model", "gen_ai_provider_name")
        self.requests = Counter(
            "sluice_requests",
            "HTTP requests answered, by route, model and status class.",
            ("route", "gen_ai_request_model", "status_class"),
            registry=registry,
        )
        self.request_duration = Histogram(
            "gen_ai_server_request_duration_seconds",
            "Time from the answer's start to its end (the whole generation).",
            (*model, "outcome"),
            buckets=_DURATION,
            registry=registry,
        )
        self.server_ttft = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Time to the first token as the upstream delivered it (retries included).",
            model,
            buckets=_LATENCY,
            registry=registry,
        )
        self.server_tpot = Histogram(
            "gen_ai_server_time_per_output_token_seconds",
            "Mean time between output tokens after the first, per answer, upstream side.",
            model,
            buckets=_PER_TOKEN,
            registry=registry,
        )
        self.client_ttft = Histogram(
            "sluice_client_time_to_first_token_seconds",
            "Time from the request's arrival to the first byte of the answer written to "
            "the client.",
            ("route", "gen_ai_request_model"),
            buckets=_LATENCY,
            registry=registry,
        )
        self.client_tpot = Histogram(
            "sluice_client_time_per_output_token_seconds",
            "Mean time between output tokens after the first, per answer, client side.",
            ("route", "gen_ai_request_model"),
            buckets=_PER_TOKEN,
            registry=registry,
        )
        self.overhead = Histogram(
            "sluice_gateway_overhead_seconds",
            "What the gateway added to the time to first token: client view minus "
            "upstream view, per request.",
            ("route", "gen_ai_request_model"),
            buckets=_OVERHEAD,
            registry=registry,
        )
        self.token_usage = Histogram(
            "gen_ai_client_token_usage",
            "Tokens per answer, input and output.",
            (*model, "gen_ai_token_type"),
            buckets=_TOKENS,
            registry=registry,
        )
        self.tokens = Counter(
            "sluice_tokens",
            "Tokens, input and output (cached answers excluded: they spent none).",
            (*model, "gen_ai_token_type"),
            registry=registry,
        )
        self.active = Gauge(
            "sluice_active_streams",
            "Answers being generated now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.upstream_errors = Counter(
            "sluice_upstream_errors",
            "Upstream attempts that failed, by error class.",
            (*model, "error_type"),
            registry=registry,
        )
        self.retries = Counter(
            "sluice_retries",
            "Further attempts after a failed one (same model or a fallback).",
            model,
            registry=registry,
        )
        self.fallbacks = Counter(
            "sluice_fallbacks",
            "Answers served by a fallback model instead of the one asked for.",
            ("gen_ai_request_model", "gen_ai_response_model"),
            registry=registry,
        )
        self.failovers = Counter(
            "sluice_failovers",
            "Answers continued on another model after failing mid-answer.",
            ("gen_ai_request_model",),
            registry=registry,
        )
        self.cancellations = Counter(
            "sluice_cancellations",
            "Answers stopped before the model finished, by reason.",
            ("gen_ai_request_model", "reason"),
            registry=registry,
        )
        self.resumes = Counter(
            "sluice_resumes",
            "Streams read again by id (resumed after a drop, or from another instance).",
            ("route",),
            registry=registry,
        )
        self.rejections = Counter(
            "sluice_rejections",
            "Requests refused by a limit: rate limits, budgets, capacity.",
            ("limit",),
            registry=registry,
        )
        self.cache = Counter(
            "sluice_cache_requests",
            "Requests by response-cache outcome (hit, miss, refresh, bypass).",
            ("outcome",),
            registry=registry,
        )
        self.coalesced = Counter(
            "sluice_cache_coalesced_requests",
            "Requests that followed an identical answer already in flight.",
            registry=registry,
        )
        self.cache_stored = Counter(
            "sluice_cache_stored_bytes",
            "Bytes of answers stored in the response cache.",
            registry=registry,
        )
        self.guardrails = Counter(
            "sluice_guardrail_matches",
            "Guardrail matches that took effect, by rule, action and direction.",
            ("rule", "action", "direction"),
            registry=registry,
        )
        self.loop_lag = Gauge(
            "sluice_event_loop_lag_seconds",
            "How late the event loop ran a timer, at the last look (every half second).",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.cpu = Gauge(
            "sluice_process_cpu_percent",
            "CPU used by the process over the last few seconds (100 = one core).",
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.memory = Gauge(
            "sluice_process_resident_memory_bytes",
            "Resident memory of the process.",
            registry=registry,
            multiprocess_mode="liveall",
        )
        self.request_log_dropped = Counter(
            "sluice_request_log_dropped_rows",
            "Request log rows dropped: the database could not take them in time, or refused one.",
            registry=registry,
        )
        self.alerts = Counter(
            "sluice_alert_transitions",
            "Alert state changes, by alert and the state entered (firing, resolved).",
            ("alert", "state"),
            registry=registry,
        )
        self.alert_firing = Gauge(
            "sluice_alert_firing",
            "1 while the alert fires.",
            ("alert",),
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._sampler: asyncio.Task[None] | None = None
        #: The latest samples, for alerts.
        self.lag_seconds = 0.0
        self.cpu_percent = 0.0
        self.rss_bytes = 0

    def _model(self, name: str) -> tuple[str, str]:
        return name, self._providers.get(name, "unknown")

    # -- fed by the engine: once per answer -------------------------------------------

    def answer_started(self, generation: Generation) -> None:
        self.active.inc()

    def answer_finished(self, generation: Generation) -> None:
        self.active.dec()
        asked = generation.model
        labels = self._model(asked)
        started = generation.started_at
        first, finished = generation.first_token_at, generation.finished_at
        state = generation.state.value
        if finished is not None:
            self.request_duration.labels(*labels, state).observe(finished - started)
        usage = generation.usage
        # A cached or shared answer's tokens and timing are its source's, counted there.
        cached = generation.sourced
        if first is not None and not cached:
            self.server_ttft.labels(*labels).observe(first - started)
            if usage is not None and finished is not None and usage.completion_tokens > 1:
                per_token = (finished - first) / (usage.completion_tokens - 1)
                self.server_tpot.labels(*labels).observe(per_token)
        if usage is not None and not cached:
            for kind, count in (
                ("input", usage.prompt_tokens),
                ("output", usage.completion_tokens),
            ):
                self.token_usage.labels(*labels, kind).observe(count)
                self.tokens.labels(*labels, kind).inc(count)
        for error in generation.upstream_errors:
            self.upstream_errors.labels(*labels, error).inc()
        attempts = generation.route.attempts
        if attempts > 1:
            self.retries.labels(*labels).inc(attempts - 1)
        served = generation.served_by
        if served is not None and served != asked:
            self.fallbacks.labels(asked, served).inc()
        switches = len(generation.switches)
        if switches:
            self.failovers.labels(asked).inc(switches)
        if state == "cancelled" or generation.cancel_reason is not None:
            self.cancellations.labels(asked, generation.cancel_reason or "stopped").inc()

    # -- fed by the edges: once per request --------------------------------------------

    def request_finished(
        self,
        route: str,
        model: str | None,
        status: int,
        *,
        client_ttft: float | None = None,
        server_ttft: float | None = None,
        client_tpot: float | None = None,
    ) -> None:
        # Only configured names: a label from a client's string would be unbounded.
        name = model if model in self._providers else ""
        self.requests.labels(route, name, status_class(status)).inc()
        if client_ttft is not None:
            self.client_ttft.labels(route, name).observe(client_ttft)
            if server_ttft is not None:
                self.overhead.labels(route, name).observe(max(0.0, client_ttft - server_ttft))
        if client_tpot is not None:
            self.client_tpot.labels(route, name).observe(client_tpot)

    # -- the process -----------------------------------------------------------------

    def guardrail_matched(self, match: Match, direction: str) -> None:
        """A guardrail took effect: counted, and noted on the request's log record."""
        self.guardrails.labels(match.rule, match.action, direction).inc()
        record = current_record()
        if record is not None:
            record.guardrail(f"{match.rule}:{match.action}")

    def start_sampling(self, interval: float = 0.5) -> None:
        """Event-loop lag every ``interval``; CPU and memory every few seconds."""
        if self._sampler is None:
            self._sampler = asyncio.get_running_loop().create_task(self._sample(interval))

    async def _sample(self, interval: float) -> None:
        process = psutil.Process()
        process.cpu_percent()  # the first call only starts the measurement
        loop = asyncio.get_running_loop()
        ticks = 0
        while True:
            expected = loop.time() + interval
            await asyncio.sleep(interval)
            self.lag_seconds = max(0.0, loop.time() - expected)
            self.loop_lag.set(self.lag_seconds)
            ticks += 1
            if ticks % 6 == 0:
                self.cpu_percent = process.cpu_percent()
                self.rss_bytes = process.memory_info().rss
                self.cpu.set(self.cpu_percent)
                self.memory.set(self.rss_bytes)

    async def aclose(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None

    def render(self) -> bytes:
        if multiprocess():
            merged = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged)
        return generate_latest(self.registry)


def forget_dead_workers() -> None:
    """Drop the live gauges of worker processes that are gone (uvicorn restarts a
    killed worker under a new pid; the dead one's active streams must not count)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    pids: set[int] = set()
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        number = path.rsplit("_", 1)[-1].removesuffix(".db")
        if number.isdigit():
            pids.add(int(number))
    for pid in pids:
        if not psutil.pid_exists(pid):
            prometheus_multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
