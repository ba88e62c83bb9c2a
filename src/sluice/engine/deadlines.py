"""Deadlines of one generation, checked by one timer instead of a timer per read.

The timer ticks at a quarter of the tightest deadline. ``first_token`` runs per attempt
(a retry gets a fresh one), ``idle`` once tokens flow, ``total`` over the whole answer.
An expired deadline calls back with the UpstreamTimeout to raise; whether that ends the
answer or only the attempt is the Generation's call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sluice.errors import UpstreamTimeout
from sluice.settings import Timeouts


class Deadlines:
    __slots__ = (
        "_handle",
        "_on_expired",
        "_timeouts",
        "attempt_started_at",
        "last_event_at",
        "started_at",
        "streaming",
        "waiting",
    )

    def __init__(self, timeouts: Timeouts, on_expired: Callable[[UpstreamTimeout], None]) -> None:
        self._timeouts = timeouts
        self._on_expired = on_expired
        self._handle: asyncio.TimerHandle | None = None
        self.started_at = self.attempt_started_at = self.last_event_at = time.monotonic()
        #: Tokens have started to flow (the idle deadline applies from then on).
        self.streaming = False
        #: Between attempts (a retry's backoff): no first-token deadline runs.
        self.waiting = False

    def start(self) -> None:
        self._arm()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def new_attempt(self) -> None:
        """An attempt starts now: a fresh first-token deadline (re-armed if it fired)."""
        self.attempt_started_at = time.monotonic()
        self.waiting = False
        if self._handle is None:
            self._arm()

    def _arm(self) -> None:
        t = self._timeouts
        every = min(1.0, max(0.02, min(t.first_token, t.idle, t.total) / 4))
        self._handle = asyncio.get_running_loop().call_later(every, self._check)

    def _check(self) -> None:
        now = time.monotonic()
        t = self._timeouts
        if now - self.started_at > t.total:
            self._expire(f"the answer took longer than {t.total:g} s", "total_timeout")
        elif (
            not self.streaming
            and not self.waiting
            and now - self.attempt_started_at > t.first_token
        ):
            self._expire(f"no first token within {t.first_token:g} s", "first_token_timeout")
        elif self.streaming and now - self.last_event_at > t.idle:
            self._expire(f"the upstream was silent for {t.idle:g} s", "idle_timeout")
        else:
            self._arm()
            return
        self._handle = None

    def _expire(self, message: str, code: str) -> None:
        self._on_expired(UpstreamTimeout(f"upstream timeout: {message}", code=code))
