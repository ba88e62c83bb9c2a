"""Recent answers, for the operator's at-a-glance health summary.

One small record per finished generation (never per chunk), kept for five minutes.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

_WINDOW = 300.0
_MAX = 100_000


@dataclass(frozen=True, slots=True)
class Outcome:
    at: float
    ok: bool
    ttft: float | None
    #: Seconds from start to end of the answer.
    duration: float | None = None


class RecentAnswers:
    def __init__(self) -> None:
        self._outcomes: deque[Outcome] = deque(maxlen=_MAX)

    def record(self, ok: bool, ttft: float | None, duration: float | None = None) -> None:
        self._outcomes.append(Outcome(time.monotonic(), ok, ttft, duration))

    def since(self, moment: float) -> list[Outcome]:
        """The answers that ended at or after ``moment`` (monotonic), oldest first."""
        found: list[Outcome] = []
        for outcome in reversed(self._outcomes):
            if outcome.at < moment:
                break
            found.append(outcome)
        found.reverse()
        return found

    def summary(self) -> dict[str, Any]:
        now = time.monotonic()
        outcomes = self._outcomes
        while outcomes and now - outcomes[0].at > _WINDOW:
            outcomes.popleft()
        last_minute = sum(1 for o in outcomes if now - o.at <= 60)
        failed = sum(1 for o in outcomes if not o.ok)
        ttfts = sorted(o.ttft for o in outcomes if o.ttft is not None)
        return {
            "requests_per_minute": last_minute,
            "error_rate": round(failed / len(outcomes), 4) if outcomes else 0.0,
            "ttft_ms": {
                "avg": round(sum(ttfts) / len(ttfts) * 1000, 1) if ttfts else None,
                "p95": round(ttfts[min(len(ttfts) - 1, int(len(ttfts) * 0.95))] * 1000, 1)
                if ttfts
                else None,
            },
            "window_seconds": _WINDOW,
        }
