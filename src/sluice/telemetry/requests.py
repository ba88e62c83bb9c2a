"""What happens when a request is over (``Telemetry.finish``): its metrics, its one log
line (logger ``sluice.requests``), and its row in the request log — written in batches
by a background task, never on the request path.

The request log keeps ``request_log_days`` days (swept hourly). If the database is
down, rows wait in memory (at most ``MAX_PENDING``; past that the oldest are dropped and
counted) and go out once it is back.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sluice.redact import scrub
from sluice.settings import ModelConfig
from sluice.store.batches import RowBatches
from sluice.store.request_log import RequestLogStore
from sluice.telemetry.logs import REQUESTS, one_line, request_line
from sluice.telemetry.metrics import Metrics
from sluice.telemetry.record import RequestRecord

logger = logging.getLogger("sluice.telemetry")
request_logger = logging.getLogger(REQUESTS)

#: Rows held while the database cannot take them.
MAX_PENDING = 50_000
#: Seconds between writes of the pending rows.
FLUSH_SECONDS = 1.0
SWEEP_SECONDS = 3600.0


async def _nowhere(rows: list[dict[str, Any]]) -> None:
    """Where rows go with no request log (none are queued then)."""


#: Errors that are a limit refusing the request (counted as rejections).
_LIMITS = {
    "rate_limit_exceeded",
    "concurrency_limit_exceeded",
    "insufficient_quota",
    "budget_reserved",
    "overloaded",
}


class Telemetry:
    def __init__(
        self,
        metrics: Metrics,
        store: RequestLogStore | None,
        models: dict[str, ModelConfig],
        *,
        keep_days: float = 7.0,
    ) -> None:
        self.metrics = metrics
        self._store = store
        self._models = models
        self._keep = keep_days * 86400
        self._swept = 0.0
        self._rows = RowBatches(
            store.insert if store is not None else _nowhere,
            name="request log rows",
            every=FLUSH_SECONDS,
            limit=MAX_PENDING,
            on_drop=metrics.request_log_dropped.inc,
            after=self._sweep,
        )

    def finish(self, record: RequestRecord) -> None:
        """The request is over: count it, log it, queue its row. Never raises."""
        try:
            self._finish(record)
        except Exception:
            logger.exception("recording the request %s failed", record.id)

    def _finish(self, record: RequestRecord) -> None:
        facts = record.facts()
        generation = record.generation
        client_ttft = record.client_ttft
        server_ttft = client_tpot = None
        if generation is not None and client_ttft is not None:
            if generation.first_token_at is not None:
                server_ttft = generation.first_token_at - generation.started_at
            usage = generation.usage
            if usage is not None and usage.completion_tokens > 1:
                streaming = record.duration - client_ttft
                client_tpot = streaming / (usage.completion_tokens - 1)
        metrics = self.metrics
        metrics.request_finished(
            record.route,
            record.model,
            record.status,
            client_ttft=client_ttft,
            server_ttft=server_ttft,
            client_tpot=client_tpot,
        )
        if record.error in _LIMITS:
            metrics.rejections.labels(record.error).inc()
        if record.route == "streams" and record.method == "GET" and record.status == 200:
            metrics.resumes.labels("streams").inc()
        facts["cost"] = self._cost(facts)
        safe(facts)
        request_logger.info(request_line(facts), extra={"request": facts})
        if self._store is not None and record.route not in ("health", "metrics", "page"):
            facts["at"] = record.at
            self._rows.add(facts)

    def _cost(self, facts: dict[str, Any]) -> float | None:
        model = facts.get("served_by") or facts.get("model")
        config = self._models.get(model) if isinstance(model, str) else None
        prompt, completion = facts.get("prompt_tokens"), facts.get("completion_tokens")
        if config is None or config.price is None or prompt is None or completion is None:
            return None
        if facts.get("cache") == "hit" or facts.get("coalesced"):
            return 0.0  # served without spending tokens
        return config.price.cost(prompt, completion)

    # -- the writer ---------------------------------------------------------------------

    @property
    def dropped(self) -> int:
        return self._rows.dropped

    def start(self) -> None:
        if self._store is not None:
            self._rows.start()

    async def _sweep(self) -> None:
        if self._store is not None and time.time() - self._swept > SWEEP_SECONDS:
            await self._store.sweep(time.time() - self._keep)
            self._swept = time.time()

    async def flush(self) -> None:
        await self._rows.flush()

    async def aclose(self) -> None:
        await self._rows.aclose()


#: Column widths of the request log (``store/schema.py``): longer values are clipped.
_WIDTHS = {
    "request_id": 128,
    "method": 8,
    "route": 32,
    "path": 200,
    "model": 200,
    "served_by": 200,
    "key_id": 32,
    "key_name": 200,
    "owner": 64,
    "stream_id": 64,
    "cache": 16,
    "finish_reason": 32,
    "error": 64,
}


def safe(facts: dict[str, Any]) -> None:
    """Make a request's facts fit to log, store and print, in place: secret-shaped text
    out of what the client chose (the path), no control characters, no value wider than
    its column."""
    path = facts.get("path")
    if isinstance(path, str):
        facts["path"] = scrub(path)
    for name, width in _WIDTHS.items():
        value = facts.get(name)
        if isinstance(value, str):
            facts[name] = one_line(value)[:width]
