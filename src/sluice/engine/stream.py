"""Stream: one answer's events as every edge reads them, wherever they are produced.

A generation running here (``LocalStream``) and one running on another instance, read
from the shared log in Redis (``SharedStream``), look the same: what the edge needs to
speak the stream (``StreamInfo``), the events read so far (numbered from 1), whether it
has ended, a way to wait for more, and a subscription. ``Engine.stream`` hands out
either by id; no edge asks which one it got.

::

    Stream ── info: StreamInfo        model, created, usage asked, format, owner, ids
           ── events / closed         what arrived, and whether that is all
           ── wait(seen)              until more than ``seen``, the end, or a heartbeat
           ── subscribe()             async context manager: the disconnect policy acts
                                      when the last subscriber leaves
           ── attach(sink) / detach() the primary subscriber may take delivery from the
                                      producing task itself (local streams only)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from sluice.errors import Unavailable
from sluice.events import Event
from sluice.wire.errors import stream_error_from

if TYPE_CHECKING:
    from sluice.engine.generation import Generation
    from sluice.store.shared_log import Entry, RedisEventLogs, StreamMeta

#: Receives each batch from the producing task (see Stream.attach).
Sink = Callable[[list[Event]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What an edge needs to speak a stream: given when it starts, never changed."""

    id: str
    #: The model name the client asked for (fallbacks never show through).
    model: str
    created: int
    #: The client asked for the usage record (OpenAI ``stream_options``).
    include_usage: bool
    #: The protocol a replay speaks: "openai" or "chat".
    format: str
    #: Who may read, resume and stop it (see sluice.owners).
    owner: str
    conversation_id: str | None = None
    message_id: str | None = None

    @property
    def completion_id(self) -> str:
        return f"chatcmpl-{self.id}"


@dataclass(frozen=True, slots=True)
class Timing:
    """What the gateway measured of an answer (the chat protocol's done frame)."""

    ttft_ms: float | None = None
    duration_ms: float | None = None


class Stream(Protocol):
    info: StreamInfo

    @property
    def events(self) -> list[Event]: ...

    @property
    def closed(self) -> bool: ...

    async def wait(self, seen: int) -> None:
        """Return once there are more than ``seen`` events, the stream ended, or a
        heartbeat passed with nothing new (the caller looks and carries on)."""

    async def wait_end(self) -> None:
        """Until the stream ends (a reader that takes delivery through ``attach``, or
        wants only the whole answer)."""

    def subscribe(self) -> contextlib.AbstractAsyncContextManager[None]: ...

    async def cancel(self) -> None:
        """Stop it, wherever it runs: the partial answer is kept, open choices finish
        ``incomplete``. Returns at once; the end arrives as events."""

    def attach(self, sink: Sink) -> bool:
        """Take later batches straight from the producer; False if this stream cannot
        (then read with ``wait``)."""

    def detach(self) -> None: ...

    def timing(self) -> Timing: ...


class LocalStream:
    """A generation running in this process."""

    __slots__ = ("_generation", "info")

    def __init__(self, generation: Generation) -> None:
        self._generation = generation
        self.info = generation.info

    @property
    def generation(self) -> Generation:
        return self._generation

    @property
    def events(self) -> list[Event]:
        return self._generation.log.events

    @property
    def closed(self) -> bool:
        return self._generation.log.closed

    async def wait(self, seen: int) -> None:
        await self._generation.log.wait(seen)

    async def wait_end(self) -> None:
        await self._generation.log.wait_end()

    async def cancel(self) -> None:
        self._generation.cancel()

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[None]:
        generation = self._generation
        generation.subscribe()
        try:
            yield
        finally:
            if generation.unsubscribe():
                # The last one out closes the upstream call before going on.
                await generation.wait()

    def attach(self, sink: Sink) -> bool:
        # A detached generation must not wait for any one client, and only its first
        # subscriber takes delivery: a resumer must never take it from the client that
        # asked (nor make it wait on a slow resumer).
        if self._generation.policy != "cancel":
            return False
        return self._generation.attach(sink)

    def detach(self) -> None:
        self._generation.detach()

    def timing(self) -> Timing:
        generation = self._generation
        started, first, finished = (
            generation.started_at,
            generation.first_token_at,
            generation.finished_at,
        )
        return Timing(
            ttft_ms=(first - started) * 1000 if first else None,
            duration_ms=(finished - started) * 1000 if finished else None,
        )


class SharedStream:
    """A generation running on another instance, read from the shared log in Redis.

    Its events arrive in stored batches; ``wait`` pulls the next one (or a heartbeat).
    It cannot take pushed delivery, and its timings live in the owner's memory (and,
    for chat turns, in the stored message)."""

    __slots__ = ("_closed", "_entries", "_events", "_logs", "_meta", "info")

    def __init__(self, logs: RedisEventLogs, meta: StreamMeta) -> None:
        self._logs = logs
        self._meta = meta
        self.info = StreamInfo(
            id=meta.id,
            model=meta.model,
            created=meta.created,
            include_usage=meta.include_usage,
            format=meta.format,
            owner=meta.owner,
            conversation_id=meta.conversation_id or None,
            message_id=meta.message_id or None,
        )
        self._events: list[Event] = []
        self._closed = False
        self._entries: AsyncIterator[Entry] | None = None

    @property
    def events(self) -> list[Event]:
        return self._events

    @property
    def closed(self) -> bool:
        return self._closed

    async def wait(self, seen: int) -> None:
        if len(self._events) > seen or self._closed:
            return
        if self._entries is None:
            self._entries = self._logs.entries(self._meta)
        try:
            entry = await anext(self._entries)
        except StopAsyncIteration:
            self._closed = True
            return
        except Unavailable as exc:
            # Redis went away under a response already under way: an in-band,
            # retryable error record, not a broken connection.
            self._events.append(stream_error_from(exc))
            self._closed = True
            return
        self._events.extend(entry.events)
        if entry.end:
            self._closed = True

    async def wait_end(self) -> None:
        while not self._closed:
            await self.wait(len(self._events))

    async def cancel(self) -> None:
        await self._logs.request_cancel(self._meta.id)
        if self._entries is None:
            # Whoever waits for the end now: a dead instance's stream ends at once, as
            # interrupted (no lease), instead of after the usual quiet time.
            self._entries = self._logs.entries(self._meta, block_ms=200, quiet_seconds=0)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[None]:
        try:
            yield
        finally:
            aclose = getattr(self._entries, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    def attach(self, sink: Sink) -> bool:
        return False

    def detach(self) -> None:
        return None

    def timing(self) -> Timing:
        return Timing()


async def batches(stream: Stream, after: int = 0) -> AsyncIterator[list[Event]]:
    """Every batch of ``stream`` after event ``after``, live to its end, as a
    subscriber — for readers that are not network edges (the terminal, embedding
    programs). Leaving the loop unsubscribes (and, under ``cancel``, returns only once
    the upstream call is closed)."""
    async with stream.subscribe():
        async for batch in read(stream, after):
            yield batch


async def read(stream: Stream, after: int = 0) -> AsyncIterator[list[Event]]:
    """Every batch of ``stream`` after event ``after``, live to its end, for a reader
    that holds its subscription some other way."""
    seen = after
    while True:
        events = stream.events
        if len(events) > seen:
            batch = events[seen:]
            seen += len(batch)
            yield batch
        elif stream.closed:
            return
        else:
            await stream.wait(seen)
