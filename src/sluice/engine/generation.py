"""Generation: one answer being produced, owned by the server, not by a connection.

A generation runs its provider stream in its own task and appends every event to its
EventLog; HTTP responses, WebSockets and the CLI are subscribers. When the last
subscriber leaves, the disconnect policy decides: ``cancel`` stops the upstream call at
once, ``detach`` lets the answer finish (and be saved, and be resumed by id).

States::

    running ──> completed        the provider finished every choice
        │ ───> failed           a StreamError is the last event
        └────> cancelled        cancel(): last subscriber left under `cancel`, or an
                                explicit stop; open choices finish as `incomplete`
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from sluice.engine.log import EventLog
from sluice.errors import SluiceError, UpstreamTimeout
from sluice.events import (
    Event,
    Finish,
    ReasoningDelta,
    RoleStart,
    StreamError,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from sluice.settings import DisconnectPolicy, Timeouts
from sluice.wire.errors import stream_error_from

logger = logging.getLogger("sluice.engine")

_TOKENS = (TextDelta, ReasoningDelta, ToolCallDelta)

#: Receives each batch as the generation appends it (see Generation.attach).
Sink = Callable[[list[Event]], Awaitable[None]]


class State(enum.Enum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


def new_id() -> str:
    return secrets.token_hex(12)


class Generation:
    def __init__(
        self,
        model: str,
        events: AsyncIterator[list[Event]],
        *,
        policy: DisconnectPolicy = "cancel",
        timeouts: Timeouts | None = None,
        on_done: Callable[[Generation], None] | None = None,
    ) -> None:
        self.id = new_id()
        self.model = model
        self.policy: DisconnectPolicy = policy
        self.created = int(time.time())
        self.log = EventLog()
        self.state = State.RUNNING
        self.subscribers = 0
        self.started_at = time.monotonic()
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self.usage: Usage | None = None
        self._events = events
        self._on_done = on_done
        self._open_choices: set[int] = set()
        self._task: asyncio.Task[None] | None = None
        self._timeouts = timeouts or Timeouts()
        self._expired: UpstreamTimeout | None = None
        self._last_event_at = self.started_at
        self._watchdog: asyncio.TimerHandle | None = None
        self._sink: Sink | None = None

    @property
    def completion_id(self) -> str:
        return f"chatcmpl-{self.id}"

    @property
    def done(self) -> bool:
        return self.state is not State.RUNNING

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name=f"gen-{self.id}")
        self._watchdog = loop.call_later(self._check_every(), self._check_deadlines)

    def _check_every(self) -> float:
        # One timer per generation, ticking at a quarter of the tightest deadline, costs
        # nothing per chunk (a timer re-armed on every read would).
        t = self._timeouts
        return float(min(1.0, max(0.02, min(t.first_token, t.idle, t.total) / 4)))

    def _check_deadlines(self) -> None:
        if self.done:
            return
        now = time.monotonic()
        t = self._timeouts
        if now - self.started_at > t.total:
            self._expire(f"the answer took longer than {t.total:g} s", "total_timeout")
        elif self.first_token_at is None and now - self.started_at > t.first_token:
            self._expire(f"no first token within {t.first_token:g} s", "first_token_timeout")
        elif self.first_token_at is not None and now - self._last_event_at > t.idle:
            self._expire(f"the upstream was silent for {t.idle:g} s", "idle_timeout")
        else:
            self._watchdog = asyncio.get_running_loop().call_later(
                self._check_every(), self._check_deadlines
            )

    def _expire(self, message: str, code: str) -> None:
        self._expired = UpstreamTimeout(f"upstream timeout: {message}", code=code)
        self.cancel()

    def subscribe(self) -> None:
        self.subscribers += 1

    def unsubscribe(self) -> None:
        self.subscribers -= 1
        if self.subscribers <= 0 and self.policy == "cancel" and not self.done:
            self.cancel()

    def attach(self, sink: Sink) -> None:
        """Deliver every later batch straight to ``sink`` from the generation's own task.

        The primary subscriber of a stream uses this instead of waking its own task per
        chunk; the generation awaits the sink, so a slow client slows the upstream read
        (backpressure) rather than growing memory. One sink at most; other subscribers
        read the log.
        """
        self._sink = sink

    def detach(self) -> None:
        self._sink = None

    def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        log = self.log
        open_choices = self._open_choices
        events = self._events
        try:
            async for batch in events:
                self._last_event_at = now = time.monotonic()
                for event in batch:
                    kind = type(event)
                    if kind is TextDelta or kind in _TOKENS:
                        if self.first_token_at is None:
                            self.first_token_at = now
                    elif kind is RoleStart:
                        open_choices.add(event.index)  # type: ignore[union-attr]
                    elif kind is Finish:
                        open_choices.discard(event.index)  # type: ignore[union-attr]
                    elif kind is Usage:
                        self.usage = event  # type: ignore[assignment]
                log.extend(batch)
                sink = self._sink
                if sink is not None:
                    try:
                        await sink(batch)
                    except Exception:
                        # The sink's client is gone; its handler notices and leaves.
                        logger.debug("sink of %s failed", self.id, exc_info=True)
                        self._sink = None
                        log.wake()
            self.state = State.COMPLETED
        except asyncio.CancelledError:
            if self._expired is not None:
                log.append(stream_error_from(self._expired))
                self.state = State.FAILED
            else:
                for index in sorted(open_choices):
                    log.append(Finish("incomplete", index))
                self.state = State.CANCELLED
        except SluiceError as exc:
            log.append(stream_error_from(exc))
            self.state = State.FAILED
        except Exception:
            logger.exception("generation %s failed", self.id)
            log.append(StreamError("server_error", "internal error in the gateway", status=500))
            self.state = State.FAILED
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
            await _close(events)
            self.finished_at = time.monotonic()
            log.close()
            if self._on_done is not None:
                self._on_done(self)


async def _close(events: AsyncIterator[list[Event]]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # the stream already failed; closing must not hide that
            logger.debug("closing a provider stream failed", exc_info=True)
