"""EventLog: the events of one generation, numbered from 1, with waiting readers.

The generation task appends; every subscriber (an HTTP response, a WebSocket, the CLI,
a resumed client) reads ``events[seen:]`` in batches, so a slow reader wakes once for
many events instead of once per event.
"""

from __future__ import annotations

import asyncio

from sluice.events import Event


class EventLog:
    __slots__ = ("_waiters", "closed", "events")

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed = False
        self._waiters: list[asyncio.Future[None]] = []

    def append(self, event: Event) -> None:
        self.events.append(event)
        if self._waiters:
            self._wake()

    def close(self) -> None:
        self.closed = True
        self._wake()

    def wake(self) -> None:
        """Wake every reader without a new event (keep-alive ticks, disconnects)."""
        self._wake()

    async def wait(self, seen: int) -> None:
        """Return once there are more than ``seen`` events, the log is closed, or
        someone called ``wake``."""
        if len(self.events) > seen or self.closed:
            return
        # One future per reader: a cancelled reader must not cancel the others.
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if not waiter.done():
                self._waiters.remove(waiter)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
