"""RetryState: which upstream next, and when (pure policy, fake clock)."""

from __future__ import annotations

import random

import pytest

from sluice.engine.retry import Candidate, Cooldowns, RetryState
from sluice.errors import (
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from sluice.settings import RetryPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def candidate(name: str, **policy: float) -> Candidate:
    return Candidate(name, RetryPolicy(**policy), cooldown=10.0)  # type: ignore[arg-type]


def state(route: list[Candidate], clock: Clock, cooldowns: Cooldowns | None = None) -> RetryState:
    return RetryState(route, cooldowns or Cooldowns(clock), clock=clock, rng=random.Random(0))


@pytest.mark.parametrize(
    "error",
    [
        UpstreamUnavailable("refused"),
        UpstreamTimeout("slow"),
        UpstreamError("conflict", status=409),
        UpstreamRateLimited("busy"),
        UpstreamError("dropped before output"),
    ],
)
def test_retryable_errors_retry_with_growing_jittered_backoff(error: UpstreamError) -> None:
    clock = Clock()
    retry = state([candidate("a", attempts=4, backoff_initial=1, backoff_max=3)], clock)
    assert retry.first().attempt == 1
    delays = []
    for expected_attempt in (2, 3, 4):
        step = retry.next(error)
        assert step is not None and step.attempt == expected_attempt
        delays.append(step.delay)
    # Equal jitter: within [ceiling/2, ceiling], ceiling doubling up to backoff_max.
    assert 0.5 <= delays[0] <= 1.0
    assert 1.0 <= delays[1] <= 2.0
    assert 1.5 <= delays[2] <= 3.0
    assert retry.next(error) is None
    assert retry.attempts == 4


def test_retry_after_is_honoured_exactly() -> None:
    retry = state([candidate("a", attempts=3)], Clock())
    retry.first()
    step = retry.next(UpstreamRateLimited("busy", retry_after=2.5))
    assert step is not None and step.delay == 2.5


def test_too_long_retry_after_goes_to_the_fallback_at_once() -> None:
    retry = state([candidate("a", attempts=3, max_retry_after=5), candidate("b")], Clock())
    retry.first()
    step = retry.next(UpstreamRateLimited("busy", retry_after=60))
    assert step is not None and step.candidate.name == "b" and step.delay == 0


def test_rejected_request_never_retries_nor_falls_back() -> None:
    retry = state([candidate("a"), candidate("b")], Clock())
    retry.first()
    assert retry.next(UpstreamRejected("bad request", status=400)) is None


def test_non_retryable_error_falls_back_without_retrying() -> None:
    error = UpstreamError("upstream refused the gateway's credentials (401)")
    error.retryable = False
    retry = state([candidate("a", attempts=5), candidate("b")], Clock())
    retry.first()
    step = retry.next(error)
    assert step is not None and step.candidate.name == "b"


def test_max_elapsed_bounds_the_retries() -> None:
    clock = Clock()
    retry = state([candidate("a", attempts=10, max_elapsed=2, backoff_initial=1)], clock)
    retry.first()
    clock.now += 1.8
    step = retry.next(UpstreamUnavailable("refused"))
    assert step is None


def test_exhausted_candidate_cools_down_and_goes_to_the_back() -> None:
    clock = Clock()
    cooldowns = Cooldowns(clock)
    route = [candidate("a", attempts=1), candidate("b")]
    first = state(route, clock, cooldowns)
    assert first.first().candidate.name == "a"
    step = first.next(UpstreamUnavailable("down"))
    assert step is not None and step.candidate.name == "b"
    assert cooldowns.cooling("a")
    second = state(route, clock, cooldowns)
    assert second.first().candidate.name == "b", "a cooling upstream is skipped"
    clock.now += 10.1
    third = state(route, clock, cooldowns)
    assert third.first().candidate.name == "a", "tried again after the cooldown"


def test_success_ends_a_cooldown_early() -> None:
    clock = Clock()
    cooldowns = Cooldowns(clock)
    cooldowns.fail(candidate("a"))
    retry = state([candidate("a")], clock, cooldowns)
    step = retry.first()
    assert step.candidate.name == "a", "a cooling candidate is still tried when it is all there is"
    retry.succeeded(step)
    assert not cooldowns.cooling("a")


def test_failover_only_when_opted_in() -> None:
    clock = Clock()
    plain = state([candidate("a"), candidate("b")], clock)
    plain.first()
    assert plain.failover() is None
    opted = state([Candidate("a", RetryPolicy(), 0, failover=True), candidate("b")], clock)
    opted.first()
    step = opted.failover()
    assert step is not None and step.candidate.name == "b"
