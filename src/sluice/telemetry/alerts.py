"""Alerts: thresholds on what the gateway measures, evaluated over a sliding window.

Rules (``[alerts]`` in the config; unset thresholds are off):

- ``p95_response_seconds``: the 95th percentile of answer durations;
- ``p95_ttft_seconds``: the 95th percentile of times to first token;
- ``error_rate``: failed answers / answers (needs ``min_requests`` in the window);
- ``memory_percent``, ``cpu_percent``: the process's share of the machine's memory, and
  its CPU (100 = one core);
- ``loop_lag_seconds``: how late the event loop runs timers.

A rule's state change (firing, resolved) is logged once, counted in metrics, shown in
``/health`` (``degraded`` while any fires, with the list) and, when ``webhook_url`` is
set, POSTed there as JSON (best effort, never blocking a request).

``evaluate`` is pure given its inputs (``Sample``); ``Alerts`` runs it periodically.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import psutil

from sluice.engine.stats import Outcome, RecentAnswers
from sluice.settings import AlertRules
from sluice.telemetry.metrics import Metrics

logger = logging.getLogger("sluice.alerts")


@dataclass(frozen=True, slots=True)
class Sample:
    """What one evaluation looks at."""

    answers: list[Outcome]
    memory_percent: float
    cpu_percent: float
    loop_lag_seconds: float


@dataclass(frozen=True, slots=True)
class Reading:
    name: str
    value: float
    threshold: float

    @property
    def firing(self) -> bool:
        return self.value > self.threshold


def _p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def evaluate(rules: AlertRules, sample: Sample) -> list[Reading]:
    """A reading for every rule that is set and has something to read."""
    readings: list[Reading] = []

    def read(name: str, value: float | None, threshold: float | None) -> None:
        if threshold is not None and value is not None:
            readings.append(Reading(name, value, threshold))

    answers = sample.answers
    read(
        "p95_response_seconds",
        _p95([a.duration for a in answers if a.duration is not None]),
        rules.p95_response_seconds,
    )
    read(
        "p95_ttft_seconds",
        _p95([a.ttft for a in answers if a.ttft is not None]),
        rules.p95_ttft_seconds,
    )
    if len(answers) >= rules.min_requests:
        failed = sum(1 for a in answers if not a.ok)
        read("error_rate", failed / len(answers), rules.error_rate)
    read("memory_percent", sample.memory_percent, rules.memory_percent)
    read("cpu_percent", sample.cpu_percent, rules.cpu_percent)
    read("loop_lag_seconds", sample.loop_lag_seconds, rules.loop_lag_seconds)
    return readings


@dataclass(slots=True)
class Firing:
    reading: Reading
    since: float


class Alerts:
    def __init__(self, rules: AlertRules, recent: RecentAnswers, metrics: Metrics) -> None:
        self.rules = rules
        self._recent = recent
        self._metrics = metrics
        self.firing: dict[str, Firing] = {}
        self._task: asyncio.Task[None] | None = None
        self._posts: set[asyncio.Task[None]] = set()
        self._instance = socket.gethostname()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.rules.evaluate_seconds)
            try:
                self.check()
            except Exception:
                logger.exception("evaluating alerts failed")

    def sample(self) -> Sample:
        metrics = self._metrics
        total = psutil.virtual_memory().total
        rss = metrics.rss_bytes or psutil.Process().memory_info().rss
        return Sample(
            answers=self._recent.since(time.monotonic() - self.rules.window_seconds),
            memory_percent=100.0 * rss / total if total else 0.0,
            cpu_percent=metrics.cpu_percent,
            loop_lag_seconds=metrics.lag_seconds,
        )

    def check(self, sample: Sample | None = None) -> None:
        """Evaluate once; act on every change of state."""
        self.apply(evaluate(self.rules, sample or self.sample()))

    def apply(self, readings: Iterable[Reading]) -> None:
        now = time.time()
        seen = set()
        for reading in readings:
            seen.add(reading.name)
            was = self.firing.get(reading.name)
            if reading.firing and was is None:
                self.firing[reading.name] = Firing(reading, now)
                self._changed(reading, "firing")
            elif reading.firing and was is not None:
                was.reading = reading
            elif not reading.firing and was is not None:
                del self.firing[reading.name]
                self._changed(reading, "resolved")
        # A rule with nothing to read any more (no answers in the window) has resolved.
        for name in [n for n in self.firing if n not in seen]:
            self._changed(self.firing.pop(name).reading, "resolved")

    def _changed(self, reading: Reading, state: str) -> None:
        metrics = self._metrics
        metrics.alerts.labels(reading.name, state).inc()
        metrics.alert_firing.labels(reading.name).set(1 if state == "firing" else 0)
        log = logger.warning if state == "firing" else logger.info
        log(
            "alert %s %s: %s (threshold %s, over %g s)",
            reading.name,
            state,
            _figure(reading.value),
            _figure(reading.threshold),
            self.rules.window_seconds,
        )
        if self.rules.webhook_url:
            task = asyncio.get_running_loop().create_task(self._post(reading, state))
            self._posts.add(task)
            task.add_done_callback(self._posts.discard)

    async def _post(self, reading: Reading, state: str) -> None:
        assert self.rules.webhook_url is not None
        body = {
            "alert": reading.name,
            "state": state,
            "value": reading.value,
            "threshold": reading.threshold,
            "window_seconds": self.rules.window_seconds,
            "at": time.time(),
            "instance": self._instance,
        }
        try:
            timeout = aiohttp.ClientTimeout(total=5)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(self.rules.webhook_url, json=body) as response,
            ):
                if response.status >= 300:
                    logger.warning("the alert webhook answered HTTP %d", response.status)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            logger.warning("posting an alert to the webhook failed (%s)", type(exc).__name__)

    def report(self) -> list[dict[str, Any]]:
        """The alerts firing now, for ``/health``."""
        return [
            {
                "name": name,
                "state": "firing",
                "value": round(firing.reading.value, 4),
                "threshold": firing.reading.threshold,
                "since": firing.since,
            }
            for name, firing in sorted(self.firing.items())
        ]

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._posts:
            await asyncio.gather(*self._posts, return_exceptions=True)


def _figure(value: float) -> str:
    return f"{value:.4g}"
