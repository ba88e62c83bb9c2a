"""What happens when a request is over (``Telemetry.finish``): its metrics, its one log
line (logger ``sluice.requests``), and its row in the request log — written in batches
by a background task, never on the request path.

The request log keeps ``request_log_days`` days (swept hourly). If the database is
down, rows wait in memory (at most ``MAX_PENDING``; past that the oldest are dropped and
counted) and go out once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

from sqlalchemy.exc import DataError, IntegrityError, ProgrammingError

from sluice.redact import scrub
from sluice.settings import ModelConfig
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
        self._pending: deque[dict[str, Any]] = deque()
        self.dropped = 0
        self._writer: asyncio.Task[None] | None = None

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
            pending = self._pending
            if len(pending) >= MAX_PENDING:
                pending.popleft()
                self._dropped(1)
            facts["at"] = record.at
            pending.append(facts)

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

    def start(self) -> None:
        if self._store is not None and self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_forever())

    async def _write_forever(self) -> None:
        swept = 0.0
        failing = False
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
                if time.time() - swept > SWEEP_SECONDS:
                    assert self._store is not None
                    await self._store.sweep(time.time() - self._keep)
                    swept = time.time()
                if failing:
                    logger.warning("the request log is written again")
                failing = False
            except Exception as exc:
                if not failing:
                    logger.warning(
                        "writing the request log failed (%s); %d rows wait",
                        type(exc).__name__,
                        len(self._pending),
                    )
                failing = True

    def _dropped(self, rows: int) -> None:
        self.dropped += rows
        self.metrics.request_log_dropped.inc(rows)

    async def flush(self) -> None:
        """Write every pending row (one statement per batch of 500). A batch the
        database refuses for its content (not for being down) is written row by row,
        and a row it still refuses is dropped and counted: one bad row must never hold
        up the rows behind it."""
        store = self._store
        while store is not None and self._pending:
            batch = [self._pending[i] for i in range(min(500, len(self._pending)))]
            try:
                await store.insert(batch)
            except (DataError, IntegrityError, ProgrammingError):
                for row in batch:
                    try:
                        await store.insert([row])
                    except (DataError, IntegrityError, ProgrammingError) as exc:
                        self._dropped(1)
                        logger.warning("a request log row was refused (%s)", type(exc).__name__)
            for _ in batch:
                self._pending.popleft()

    async def aclose(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        try:
            await self.flush()
        except Exception as exc:
            logger.warning("the last %d request log rows were lost (%s)", len(self._pending), exc)


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
