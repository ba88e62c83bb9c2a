"""The relay: one Stream written to one client, through an Encoder, over a Transport.

Every streaming response and every WebSocket stream goes through ``relay``; what
differs between them is only the encoder (OpenAI chunks, chat frames as SSE, chat frames
for a WebSocket) and the transport (an HTTP response body, a WebSocket). Written once
here:

- catching up from event ``after`` (replayed events rebuild the encoder's state without
  being resent), then the live tail;
- the primary subscriber of a local ``cancel`` stream takes delivery from the
  generation's own task (no wake-up of this task per chunk; a slow client slows the
  upstream read instead of growing memory); everything else reads in batches;
- keep-alive while idle and the send timeout (one timer per response, re-armed only
  when it fires, never per chunk);
- the client's disconnect, and the server's shutdown deadline;
- racing all of them in one group where the first to finish cancels the rest.

The "status before the first byte" rule of ``/v1/chat/completions`` is ``decide`` in
``SSEResponse``: the response waits for the first event, and an error that comes first
is an HTTP error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, Protocol, TypeVar

from sluice.engine.stream import Stream
from sluice.errors import ShuttingDown
from sluice.events import Event, StreamError
from sluice.http.asgi import Receive
from sluice.wire.errors import stream_error_from

logger = logging.getLogger("sluice.http")

Out = TypeVar("Out")
Out_co = TypeVar("Out_co", covariant=True)
Out_contra = TypeVar("Out_contra", contravariant=True)

SHUTDOWN = stream_error_from(
    ShuttingDown("The server is shutting down; resume the stream elsewhere.", retry_after=1)
)


class Encoder(Protocol[Out_co]):
    """One edge protocol: a stream's events -> what its transport writes."""

    def resume(self, after: int) -> None:
        """The client already has everything up to ``after`` (the protocol's own count:
        records or events): what comes up to there updates state, and is not written."""

    def opening(self) -> Out_co | None:
        """Written first (the chat protocol's start frame)."""

    def encode(self, events: list[Event], first: int) -> Out_co | None:
        """``events``, the first numbered ``first``; None when they make no output."""

    def closing(self, stream: Stream) -> Out_co | None:
        """Written after a clean end ([DONE], the done frame); None after a failure."""

    def interruption(self, error: StreamError) -> Out_co:
        """A final error record that is not one of the stream's events (the server
        stopping): unnumbered, so a client resuming elsewhere misses nothing."""


class Transport(Protocol[Out_contra]):
    async def write(self, out: Out_contra) -> None: ...

    async def ping(self) -> None: ...


class Cut(Exception):
    """The client stopped reading: it was cut off (send timeout)."""


class _Writer(Generic[Out]):
    """One send at a time, and when the last one happened (keep-alive, send timeout)."""

    __slots__ = ("_transport", "last_write", "pending", "send_started")

    def __init__(self, transport: Transport[Out]) -> None:
        self._transport = transport
        self.last_write = time.monotonic()
        #: When the send in progress started (None: none in progress).
        self.send_started: float | None = None
        #: Encoded but not yet sent: (output, events it covers). Encoding has effects
        #: (a tool call's first delta is marked sent), so a send cut short by a
        #: cancellation is sent again from here, never re-encoded.
        self.pending: tuple[Out, int] | None = None

    async def write(self, out: Out) -> None:
        self.send_started = self.last_write = time.monotonic()
        try:
            await self._transport.write(out)
        finally:
            self.send_started = None
            self.last_write = time.monotonic()

    async def ping(self) -> None:
        self.send_started = self.last_write = time.monotonic()
        try:
            await self._transport.ping()
        finally:
            self.send_started = None
            self.last_write = time.monotonic()


async def relay(
    stream: Stream,
    encoder: Encoder[Out],
    transport: Transport[Out],
    *,
    after: int = 0,
    keepalive: float | None,
    send_timeout: float | None,
    receive: Receive | None = None,
    stopped: asyncio.Event | None = None,
    decide: Callable[[], Awaitable[bool]] | None = None,
) -> bool:
    """Write ``stream`` from event ``after`` to its end, or until the server stops (then
    an in-band ``shutting_down`` record ends it). Returns True when the caller should end
    the response; False if the client left or ``decide`` answered the request itself
    (an error before the first byte); raises ``Cut`` if the client stopped reading."""
    writer: _Writer[Out] = _Writer(transport)
    if after:
        encoder.resume(after)
    opening = encoder.opening()
    if opening is not None:
        await writer.write(opening)
    pump = _Pump(stream, encoder, writer, 0, decide)
    racers: list[Coroutine[Any, Any, object]] = [pump.run()]
    if keepalive is not None or send_timeout is not None:
        racers.append(_watch(writer, keepalive, send_timeout))
    if receive is not None:
        racers.append(disconnected(receive))
    if stopped is not None:
        racers.append(stopped.wait())
    winner = await race(racers)
    if winner == 0:
        if pump.refused:
            return False
        closing = encoder.closing(stream)
        if closing is not None:
            await writer.write(closing)
        return True
    if winner == 1 and (keepalive is not None or send_timeout is not None):
        raise Cut
    if stopped is not None and winner == len(racers) - 1:
        # The drain deadline passed with this client still reading another
        # instance's stream: say so in-band; it resumes elsewhere.
        await writer.write(encoder.interruption(SHUTDOWN))
        return True
    return False


class _Pump(Generic[Out]):
    __slots__ = ("_decide", "_encoder", "_stream", "_writer", "refused", "seen")

    def __init__(
        self,
        stream: Stream,
        encoder: Encoder[Out],
        writer: _Writer[Out],
        seen: int,
        decide: Callable[[], Awaitable[bool]] | None,
    ) -> None:
        self._stream = stream
        self._encoder = encoder
        self._writer = writer
        self._decide = decide
        self.seen = seen
        self.refused = False

    async def deliver(self, batch: list[Event]) -> None:
        """Encode one batch and write it: called by the pump, or by the generation's
        task for the primary subscriber."""
        writer = self._writer
        out = self._encoder.encode(batch, self.seen + 1)
        if out is None:
            self.seen += len(batch)
            return
        writer.pending = (out, len(batch))
        await self.flush()

    async def flush(self) -> None:
        writer = self._writer
        if writer.pending is None:
            return
        out, count = writer.pending
        await writer.write(out)
        writer.pending = None
        self.seen += count

    async def _catch_up(self) -> None:
        events = self._stream.events
        while self.seen < len(events):
            await self.deliver(events[self.seen :])

    async def run(self) -> None:
        stream = self._stream
        if self._decide is not None and not await self._decide():
            self.refused = True
            return
        await self._catch_up()
        if stream.attach(self.deliver):
            try:
                await stream.wait_end()
            finally:
                stream.detach()
        else:
            while not stream.closed:
                await stream.wait(self.seen)
                await self._catch_up()
        # What came after the last delivery (a cancellation's `incomplete` finish, a
        # failure's error record), and a delivery cut short.
        await self.flush()
        await self._catch_up()


async def _watch(writer: _Writer[Any], keepalive: float | None, send_timeout: float | None) -> None:
    """Keep-alive comments ``keepalive`` seconds after the last write; returns (the
    client is cut off) once one send has been stuck longer than ``send_timeout``. One
    timer, re-armed when it fires for the time still to go, never per chunk."""
    while True:
        now = time.monotonic()
        started = writer.send_started
        wait = keepalive or send_timeout or 1.0
        if started is not None:
            if send_timeout is not None:
                stuck = now - started
                if stuck > send_timeout:
                    logger.warning("client too slow: no progress for %.0f s, cut off", send_timeout)
                    return
                wait = send_timeout - stuck + 0.01  # when this send would be too late
        elif keepalive is not None:
            idle = now - writer.last_write
            if idle >= keepalive * 0.99:
                await writer.ping()
                continue
            wait = keepalive - idle
        if started is None and send_timeout is not None:
            # A send may begin while this sleeps: look again within half the timeout.
            wait = min(wait, send_timeout / 2)
        await asyncio.sleep(wait)


async def disconnected(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def race(racers: list[Coroutine[Any, Any, object]]) -> int:
    """Run ``racers`` together; the first to finish cancels the rest. Returns its
    position; its exception, if it raised one, is raised."""
    tasks = [asyncio.ensure_future(racer) for racer in racers]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    first = next(task for task in tasks if task in done)
    if not first.cancelled() and first.exception() is not None:
        raise first.exception()  # type: ignore[misc]
    return tasks.index(first)
