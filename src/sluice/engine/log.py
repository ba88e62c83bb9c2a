"""EventLog: the events of one generation, numbered from 1, with waiting readers.

The generation task appends; every subscriber (an HTTP response, a WebSocket, the CLI,
a resumed client) reads ``events[seen:]`` in batches, so a slow reader wakes once for
many events instead of once per event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sluice.events import Event

Mirror = Callable[[int, list[Event], bool], None]


class EventLog:
    __slots__ = ("_end_waiters", "_waiters", "closed", "events", "mirror")

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed = False
        self._waiters: list[asyncio.Future[None]] = []
        self._end_waiters: list[asyncio.Future[None]] = []
        #: Told of every batch (first sequence number, events) and of the end (an empty
        #: batch, ``end=True``): how a shared log follows this one.
        self.mirror: Mirror | None = None

    def append(self, event: Event) -> None:
        self.extend([event])

    def extend(self, batch: list[Event]) -> None:
        events = self.events
        if self.mirror is not None:
            self.mirror(len(events) + 1, batch, False)
        events.extend(batch)
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            _wake(waiters)

    def close(self) -> None:
        self.closed = True
        if self.mirror is not None:
            self.mirror(len(self.events) + 1, [], True)
        self.wake()

    def wake(self) -> None:
        """Wake every reader without a new event (keep-alive ticks, disconnects)."""
        waiters, ends = self._waiters, self._end_waiters
        self._waiters, self._end_waiters = [], []
        _wake(waiters)
        _wake(ends)

    async def wait(self, seen: int) -> None:
        """Return once there are more than ``seen`` events, the log is closed, or
        someone called ``wake``."""
        if len(self.events) > seen or self.closed:
            return
        await _park(self._waiters)

    async def wait_end(self) -> None:
        """Return once the log is closed or someone called ``wake`` — not on every
        event: for readers that get their events another way (a Generation sink)."""
        if self.closed:
            return
        await _park(self._end_waiters)


async def _park(waiters: list[asyncio.Future[None]]) -> None:
    # One future per reader: a cancelled reader must not cancel the others.
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiters.append(waiter)
    try:
        await waiter
    finally:
        if not waiter.done() and waiter in waiters:
            waiters.remove(waiter)


def _wake(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)
