"""Generation: one answer being produced, owned by the server, not by a connection.

A generation runs its attempts (the model, its retries, its fallbacks) in its own task and
appends every event to its EventLog; HTTP responses, WebSockets and the CLI are
subscribers. When the last subscriber leaves, the disconnect policy decides: ``cancel``
stops the upstream call at once, ``detach`` lets the answer finish (and be saved, and be
resumed by id).

States::

    running ──> completed        an attempt finished every choice
        │ ───> failed           a StreamError is the last event
        └────> cancelled        cancel(): last subscriber left under `cancel`, or an
                                explicit stop; open choices finish as `incomplete`

Nothing reaches the log before an attempt produces a token (a role chunk alone is held
back), so a failure before that is retried or falls back invisibly.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Protocol

from sluice.engine.deadlines import Deadlines
from sluice.engine.log import EventLog
from sluice.engine.retry import Candidate, RetryState, Step
from sluice.engine.stream import StreamInfo
from sluice.errors import BudgetExceeded, SluiceError, UpstreamError, UpstreamTimeout
from sluice.events import (
    Event,
    Failover,
    Finish,
    ReasoningDelta,
    RoleStart,
    StreamError,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from sluice.settings import DisconnectPolicy, Timeouts
from sluice.tokens import estimate_usage
from sluice.wire.errors import stream_error_from
from sluice.wire.openai_request import ChatRequest

logger = logging.getLogger("sluice.engine")

CONTINUE_PROMPT = (
    "Continue your previous answer exactly where it stopped, without repeating any of it."
)

_OUTPUT = (TextDelta, ReasoningDelta, ToolCallDelta, Finish)
_TOKENS = (TextDelta, ReasoningDelta, ToolCallDelta)

#: Receives each batch as the generation appends it (see Generation.attach).
Sink = Callable[[list[Event]], Awaitable[None]]
#: Opens one attempt: the candidate's provider streaming the request.
Opener = Callable[[Candidate, ChatRequest], AsyncIterator[list[Event]]]
#: Told when an upstream attempt starts (traces): given the candidate model and the
#: attempt's number in the route, it returns what to call with the attempt's error
#: (None: it succeeded) when the attempt is over. Runs in the generation's task.
AttemptHook = Callable[[str, int], Callable[[BaseException | None], None]]


class Allowance(Protocol):
    """Completion tokens an answer may still produce (a key's budget), owned by policy
    code; ``extend`` asks it for more once they are used up."""

    remaining: int

    async def extend(self) -> bool: ...


class State(enum.Enum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


def new_id() -> str:
    return secrets.token_hex(12)


class Generation:
    #: Thousands run at once: no per-instance dict (about 1.5 KB each).
    __slots__ = (
        "_attempt_expired",
        "_cancel_first",
        "_candidate",
        "_continuing",
        "_deadlines",
        "_fatal",
        "_idle",
        "_on_attempt",
        "_on_done",
        "_open",
        "_open_choices",
        "_output_started",
        "_running",
        "_sink",
        "_switches",
        "_task",
        "allowance",
        "cancel_reason",
        "finished_at",
        "first_token_at",
        "id",
        "info",
        "kept",
        "log",
        "model",
        "on_finish",
        "policy",
        "request",
        "route",
        "served_by",
        "sourced",
        "state",
        "subscribers",
        "timeline",
        "upstream_errors",
        "usage",
    )

    def __init__(
        self,
        info: StreamInfo,
        request: ChatRequest,
        route: RetryState,
        open_attempt: Opener,
        *,
        policy: DisconnectPolicy = "cancel",
        timeouts: Timeouts | None = None,
        on_done: Callable[[Generation], None] | None = None,
        allowance: Allowance | None = None,
        on_finish: Sequence[Callable[[Generation], None]] = (),
        on_attempt: AttemptHook | None = None,
    ) -> None:
        #: What the edges need to speak it (ids, protocol, owner): given, never changed.
        self.info = info
        self.id = info.id
        self.request = request
        self.model = request.model
        self.policy: DisconnectPolicy = policy
        self.log = EventLog()
        self.state = State.RUNNING
        self.subscribers = 0
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self.usage: Usage | None = None
        #: The model that served (or is serving) the answer.
        self.served_by: str | None = None
        #: Called once when the answer ends (usage metering, limits).
        self.on_finish: list[Callable[[Generation], None]] = list(on_finish)
        #: Completion tokens this answer may still produce (a key's budget), or None.
        self.allowance: Allowance | None = allowance
        self.route = route
        self._open = open_attempt
        self._on_attempt = on_attempt
        self._on_done = on_done
        self._open_choices: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        self._deadlines = Deadlines(timeouts or Timeouts(), self._expired)
        self._fatal: SluiceError | None = None
        self._attempt_expired: UpstreamTimeout | None = None
        self._sink: Sink | None = None
        self._output_started = False
        #: Set after a failover: the next attempt continues an answer already started.
        self._continuing = False
        self._switches: list[Event] = []
        self._running = False
        self._cancel_first = False
        #: When set (a list), when each batch arrived: ``(events so far, monotonic)``,
        #: so a cached copy can be replayed at the original pace.
        self.timeline: list[tuple[int, float]] | None = None
        #: When set: asked, once the last subscriber here left, whether subscribers
        #: elsewhere (other instances following it) still read; if so it runs on.
        self.kept: Callable[[], Awaitable[bool]] | None = None
        self._idle: asyncio.Task[None] | None = None
        #: Its events come from a given source (a cached or shared answer), not a model.
        self.sourced = False
        #: Why it was cancelled, first reason given (metrics).
        self.cancel_reason: str | None = None
        #: The class of each upstream error an attempt met (metrics; errors are rare).
        self.upstream_errors: list[str] = []
        #: The model the current attempt asks.
        self._candidate: Candidate | None = None

    @property
    def refused_by_upstream(self) -> bool:
        """It failed because the upstream refused the request itself (a 4xx)."""
        last = self.log.events[-1] if self.log.events else None
        return type(last) is StreamError and last.code == "upstream_rejected"

    @property
    def switches(self) -> list[Event]:
        """The failovers it went through (mid-answer switches to another model)."""
        return self._switches

    @property
    def owner(self) -> str:
        return self.info.owner

    @property
    def started_at(self) -> float:
        return self._deadlines.started_at

    @property
    def done(self) -> bool:
        return self.state is not State.RUNNING

    def start(self) -> None:
        """Run it (once; later calls do nothing)."""
        if self._task is not None:
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"gen-{self.id}")
        self._deadlines.start()

    @property
    def started(self) -> bool:
        return self._task is not None

    def subscribe(self) -> None:
        self.subscribers += 1

    def unsubscribe(self) -> bool:
        """One subscriber left; True if that cancelled the answer (the last one left
        under ``cancel``, and nobody elsewhere keeps it)."""
        self.subscribers -= 1
        if self.subscribers > 0 or self.policy != "cancel" or self.done:
            return False
        if self.kept is None:
            self.cancel("client_left")
            return True
        self._idle = asyncio.get_running_loop().create_task(self._cancel_unless_kept(self.kept))
        return False

    async def _cancel_unless_kept(self, kept: Callable[[], Awaitable[bool]]) -> None:
        try:
            if await kept():
                return
        except Exception:
            logger.warning("asking whether %s is still followed failed", self.id, exc_info=True)
        if self.subscribers <= 0 and not self.done:
            self.cancel("client_left")

    def cancel_if_idle(self) -> None:
        """Someone elsewhere stopped following: cancel if nobody here reads either."""
        if self.subscribers <= 0 and self.policy == "cancel" and not self.done:
            self.cancel("client_left")

    def attach(self, sink: Sink) -> bool:
        """Deliver every later batch straight to ``sink`` from the generation's own task.

        The primary subscriber of a stream uses this instead of waking its own task per
        chunk; the generation awaits the sink, so a slow client slows the upstream read
        (backpressure) rather than growing memory. One sink at most; other subscribers
        read the log.
        """
        if self._sink is not None:
            return False
        self._sink = sink
        return True

    def detach(self) -> None:
        self._sink = None

    def cancel(self, reason: str | None = "stopped") -> None:
        """Stop it: ``reason`` says why, for metrics ("stopped" by request,
        "client_left", "shutdown", an error code; None: an attempt's own timeout, which
        the route may still recover from)."""
        if self._task is None or self._task.done():
            return
        if self.cancel_reason is None:
            self.cancel_reason = reason
        if not self._running:
            # A task cancelled before its first step never runs its body: its log would
            # never close. It starts, and ends at once as cancelled.
            self._cancel_first = True
            return
        self._task.cancel()

    def abort(self, error: SluiceError) -> None:
        """End the answer with ``error`` (in-band if output started)."""
        if not self.done:
            self._fatal = error
            self.cancel(error.code or type(error).__name__)

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    def _expired(self, timeout: UpstreamTimeout) -> None:
        if timeout.upstream is None and self._candidate is not None:
            timeout.upstream = self._candidate.upstream
        if not self._output_started and timeout.code == "first_token_timeout":
            self._attempt_expired = timeout  # the attempt failed; the route may go on
            self.cancel(None)
        else:
            self._fatal = timeout
            self.cancel(timeout.code or "timeout")

    async def _run(self) -> None:
        log = self.log
        self._running = True
        try:
            if self._cancel_first:
                raise asyncio.CancelledError
            await self._attempts()
            self.state = State.COMPLETED
        except asyncio.CancelledError:
            if self._fatal is not None:
                self._bill_estimate()
                log.append(stream_error_from(self._fatal))
                self.state = State.FAILED
            else:
                # Every unfinished choice ends `incomplete` — also when it never started.
                unfinished = self._open_choices or (
                    set() if self._output_started else set(range(self.request.n))
                )
                for index in sorted(unfinished):
                    log.append(Finish("incomplete", index))
                self._bill_estimate()
                self.state = State.CANCELLED
        except SluiceError as exc:
            if self._output_started:
                self._bill_estimate()
            log.append(stream_error_from(exc))
            self.state = State.FAILED
        except Exception:
            logger.exception("generation %s failed", self.id)
            log.append(StreamError("server_error", "internal error in the gateway", status=500))
            self.state = State.FAILED
        finally:
            self._deadlines.stop()
            self.finished_at = time.monotonic()
            log.close()
            if self._on_done is not None:
                self._on_done(self)
            for callback in self.on_finish:
                try:
                    callback(self)
                except Exception:
                    logger.exception("an on_finish callback of %s failed", self.id)

    def _failover(self, failed: Step, error: UpstreamError) -> Step | None:
        """Mid-answer failure: continue on the next model, if this one opted in, by
        asking it to carry on from the partial answer."""
        if self.request.n != 1:
            return None
        step = self.route.failover()
        if step is None:
            return None
        partial = "".join(e.text for e in self.log.events if type(e) is TextDelta)
        self.request = continuation(self.request, partial)
        self._continuing = True
        self._switches.append(Failover(failed.candidate.name, step.candidate.name, error.message))
        return step

    def _bill_estimate(self) -> None:
        # Tokens were spent even if the answer never finished: bill an estimate. (A
        # StreamError must stay the last event, so this comes before it.)
        if self.usage is None:
            self.usage = estimate_usage(self.request.messages, self.log.events)
            self.log.append(self.usage)

    async def _attempts(self) -> None:
        step: Step | None = self.route.first()
        deadlines = self._deadlines
        while step is not None:
            stream: AsyncIterator[list[Event]] | None = None
            try:
                if step.delay:
                    # No first-token clock while waiting out a backoff.
                    deadlines.waiting = True
                    await asyncio.sleep(step.delay)
                deadlines.new_attempt()
                self.served_by = step.candidate.name
                self._candidate = step.candidate
                stream = self._open(step.candidate, self.request)
                if self._on_attempt is None:
                    await self._pump(stream)
                else:
                    await self._observed(stream, step.candidate.name)
                self.route.succeeded(step)
                return
            except UpstreamError as exc:
                self.upstream_errors.append(exc.code or type(exc).__name__)
                if exc.upstream is None:
                    exc.upstream = step.candidate.upstream  # so its hint names the settings
                if self._output_started:
                    step = self._failover(step, exc)
                    if step is None:
                        raise
                    await self._publish(self._switches[-1:])
                    continue
                step = self.route.next(exc)
                if step is None:
                    raise
            except asyncio.CancelledError:
                expired, self._attempt_expired = self._attempt_expired, None
                if expired is None or self._output_started:
                    raise
                # Only this attempt timed out: take the cancellation back and go on —
                # unless someone else (a client leaving, a stop) cancelled too.
                task = asyncio.current_task()
                if task is not None and task.uncancel() > 0:
                    raise
                step = self.route.next(expired)
                if step is None:
                    raise expired from None
            finally:
                if stream is not None:
                    await _close(stream)

    async def _observed(self, stream: AsyncIterator[list[Event]], model: str) -> None:
        """``_pump``, told to the attempt hook: its start, and its end with its error
        (a timeout or an abort arrives as a cancellation: the error it stands for)."""
        assert self._on_attempt is not None
        ended = self._on_attempt(model, self.route.attempts)
        try:
            await self._pump(stream)
        except BaseException as exc:
            ended(self._attempt_expired or self._fatal or exc)
            raise
        ended(None)

    async def _pump(self, stream: AsyncIterator[list[Event]]) -> None:
        deadlines = self._deadlines
        held: list[Event] = []
        async for batch in stream:
            now = deadlines.last_event_at = time.monotonic()
            if self._continuing:
                # The client already has this choice's start.
                batch = [e for e in batch if type(e) is not RoleStart]
                if not batch:
                    continue
            if not self._output_started:
                # Hold a role-only start back until output comes, so a failure before
                # it can still be retried without the client seeing two starts.
                if not any(type(event) in _OUTPUT for event in batch):
                    held.extend(batch)
                    continue
                self._output_started = deadlines.streaming = True
                self.first_token_at = now
                batch, held = held + batch, []
            exhausted = False
            if self.allowance is not None:
                batch, exhausted = await self._within_allowance(batch)
            for event in batch:
                kind = type(event)
                if kind is RoleStart:
                    self._open_choices.add(event.index)  # type: ignore[union-attr]
                elif kind is Finish:
                    self._open_choices.discard(event.index)  # type: ignore[union-attr]
                elif kind is Usage:
                    self.usage = event  # type: ignore[assignment]
            await self._publish(batch)
            if exhausted:
                # What fitted went out; the rest of the answer would exceed the budget.
                raise BudgetExceeded(
                    "This API key's budget ran out during the answer; it was cut short."
                )
            # Time spent waiting on a slow client is not upstream silence.
            deadlines.last_event_at = time.monotonic()
        if held:
            await self._publish(held)

    async def _within_allowance(self, batch: list[Event]) -> tuple[list[Event], bool]:
        """The part of ``batch`` the allowance covers, and whether it ran out and could
        not be extended. (One upstream read may carry many tokens: the cut falls inside
        the batch.) Only running out costs a call to the policy, never a chunk."""
        allowance = self.allowance
        assert allowance is not None
        for position, event in enumerate(batch):
            if type(event) in _TOKENS:
                if allowance.remaining <= 0 and not await allowance.extend():
                    return batch[:position], True
                allowance.remaining -= 1
        return batch, False

    async def _publish(self, batch: list[Event]) -> None:
        """Append to the log and hand to the sink: every event mid-answer goes this way,
        so the sink sees exactly the log."""
        self.log.extend(batch)
        if self.timeline is not None:
            self.timeline.append((len(self.log.events), time.monotonic()))
        sink = self._sink
        if sink is not None:
            try:
                await sink(batch)
            except Exception:
                # The sink's client is gone; its handler notices and leaves.
                logger.debug("sink of %s failed", self.id, exc_info=True)
                self._sink = None
                self.log.wake()


def continuation(request: ChatRequest, partial: str) -> ChatRequest:
    """The request that asks another model to carry on from ``partial``."""
    messages = [
        *request.messages,
        {"role": "assistant", "content": partial},
        {"role": "user", "content": CONTINUE_PROMPT},
    ]
    return replace(request, body={**request.body, "messages": messages})


async def _close(events: AsyncIterator[list[Event]]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # the stream already failed; closing must not hide that
            logger.debug("closing a provider stream failed", exc_info=True)
