"""Which upstream to try next, and when: retries with backoff, fallbacks, cooldowns.

Pure policy, no I/O: the Generation asks ``next(error)`` after each failed attempt and
does the waiting and the streaming itself. Retries and fallbacks only ever happen before
the first byte of output; after it, a failure is the client's to see (or, opted in per
model, a mid-stream failover — also decided here).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sluice.errors import Upstream, UpstreamError, UpstreamRejected
from sluice.settings import RetryPolicy

#: Jitter for every route: one generator, not one per answer (2.5 KB of state each).
_JITTER = random.Random()


@dataclass(frozen=True, slots=True)
class Candidate:
    """One model a request may be served by, with its retry policy."""

    name: str
    retry: RetryPolicy
    cooldown: float
    failover: bool = False
    #: What a hint about its failures may name (its settings, never its key).
    upstream: Upstream | None = None


@dataclass
class Cooldowns:
    """Upstreams that failed recently, skipped until their cooldown ends (shared by all
    requests of one engine)."""

    clock: Callable[[], float] = time.monotonic
    until: dict[str, float] = field(default_factory=dict)

    def cooling(self, name: str) -> bool:
        end = self.until.get(name)
        if end is None:
            return False
        if self.clock() >= end:
            del self.until[name]
            return False
        return True

    def fail(self, candidate: Candidate) -> None:
        if candidate.cooldown > 0:
            self.until[candidate.name] = self.clock() + candidate.cooldown

    def recover(self, name: str) -> None:
        self.until.pop(name, None)


@dataclass(frozen=True, slots=True)
class Step:
    candidate: Candidate
    #: Seconds to wait before this attempt.
    delay: float
    #: 1 for a candidate's first attempt.
    attempt: int


class RetryState:
    """The attempts of one request across its route (the model, then its fallbacks)."""

    def __init__(
        self,
        route: list[Candidate],
        cooldowns: Cooldowns,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        # Candidates in cooldown go to the back: tried only if everything else failed.
        fresh = [c for c in route if not cooldowns.cooling(c.name)]
        self._route = fresh + [c for c in route if c not in fresh]
        self._cooldowns = cooldowns
        self._clock = clock
        self._rng = rng or _JITTER
        self._position = 0
        self._attempt = 0
        self._candidate_started = 0.0
        self.attempts = 0

    def first(self) -> Step:
        self._attempt = 1
        self._candidate_started = self._clock()
        self.attempts = 1
        return Step(self._route[0], 0.0, 1)

    def next(self, error: UpstreamError) -> Step | None:
        """After a failed attempt that sent no output: the next step, or None to give
        up with ``error``."""
        if isinstance(error, UpstreamRejected):
            return None  # the request itself is wrong: no upstream will take it
        candidate = self._route[self._position]
        policy = candidate.retry
        waitable = error.retry_after is None or error.retry_after <= policy.max_retry_after
        if error.retryable and waitable and self._attempt < policy.attempts:
            delay = self._delay(policy, error)
            spent = self._clock() - self._candidate_started
            if spent + delay <= policy.max_elapsed:
                self._attempt += 1
                self.attempts += 1
                return Step(candidate, delay, self._attempt)
        self._cooldowns.fail(candidate)
        return self._fallback()

    def failover(self) -> Step | None:
        """After a failure mid-output: the next model, if this one opted in."""
        candidate = self._route[self._position]
        if not candidate.failover:
            return None
        self._cooldowns.fail(candidate)
        return self._fallback()

    def succeeded(self, step: Step) -> None:
        self._cooldowns.recover(step.candidate.name)

    def _fallback(self) -> Step | None:
        self._position += 1
        if self._position >= len(self._route):
            return None
        self._attempt = 1
        self.attempts += 1
        self._candidate_started = self._clock()
        return Step(self._route[self._position], 0.0, 1)

    def _delay(self, policy: RetryPolicy, error: UpstreamError) -> float:
        if error.retry_after is not None:
            # The upstream said when; honour it exactly (bounded by max_elapsed above).
            return error.retry_after
        ceiling = min(policy.backoff_max, policy.backoff_initial * 2 ** (self._attempt - 1))
        # "Equal jitter": at least half the backoff, so retries never bunch at zero.
        return float(ceiling / 2 + self._rng.uniform(0, ceiling / 2))
